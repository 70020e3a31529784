"""Pictures and labels: wait for an item's picture, classify it off the tick, decide its rod."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any, Literal

import py_trees

from bt_sorter.behaviours.base import Context, Leaf, Param, register
from bt_sorter.blackboard import Item
from bt_sorter.item_story import since_feed
from bt_sorter.linemodel import quantities
from bt_sorter.vision.classifier import (
    NO_CONFIDENT_LABEL,
    UNKNOWN,
    BadPictureError,
    ClassifyError,
    Prediction,
    apply_threshold,
)
from bt_sorter.vision.shelf import PictureShelf

Status = py_trees.common.Status


def oldest_undecided(ctx: Context, with_picture: bool = False) -> Item | None:
    """The oldest item in flight whose label is not decided yet."""
    for item in ctx.bb.items:
        if not item.decided and (item.picture is not None or not with_picture):
            return item
    return None


def decide(ctx: Context, item: Item, label: str, reason: str = "") -> None:
    """Fix an item's label and rod; a label with no route, or too late, rides to bin 1."""
    rod = ctx.config.sorting.routes.get(label)
    if rod is not None and rod not in ctx.bb.topology.rods:  # config.validate refuses it
        rod, reason = None, f"label {label!r} routes to rod {rod}, which the line lacks"
    elif rod is not None and item.cleared >= (gate := ctx.bb.topology.gate_of(rod)):
        rod, reason = None, f"label came after it passed gate {gate}"
    item.label, item.rod, item.decided = label, rod, True
    if rod is None:
        item.reject_reason = reason or f"label {label!r} has no rod"
    ctx.bb.last_label = label
    doubt = {"doubt": item.prediction.doubt} if item.prediction and item.prediction.doubt else {}
    ctx.record.write(
        "item_classified",
        ctx.bb.now,
        item=item.id,
        label=label,
        rod=rod,
        confidence=item.prediction.confidence if item.prediction else None,
        backend=item.prediction.backend if item.prediction else None,
        **doubt,
    )


@register
class AwaitPicture(Leaf):
    """Wait for the picture of an undecided item.

    ``item: oldest`` waits for the oldest undecided item (RUNNING while there is none:
    a pipeline's vision branch); ``item: newest`` takes the item just fed (FAILURE if it
    has gone: a sequential tree's feed that put nothing on the belt). SUCCESS once the
    item has a picture; FAILURE when none can come any more: the item has left gate 1
    (the camera is upstream of it), is past the line model's picture deadline, or has left the line.
    Waiting again (a retry) for an item whose picture every classifier already failed on
    fails at once: only a picture that did not decode is dropped and worth waiting past.

    reads: items, line, now. writes: nothing (the matcher gives pictures to items).
    """

    params = (
        Param("item", Literal["oldest", "newest"], "which item: the oldest undecided, or the "
              "newest fed", "oldest"),
    )  # fmt: skip
    item: str

    def initialise(self) -> None:
        self.target: Item | None = None

    def update(self) -> Status:
        if self.target is None:
            if self.item == "newest":
                newest = self.bb.items.newest()
                if newest is None or newest.decided:
                    self.feedback_message = "the item just fed has gone"
                    return Status.FAILURE
                self.target = newest
            else:
                self.target = oldest_undecided(self.ctx)
                if self.target is None:
                    return Status.RUNNING
        target = self.target
        if target.picture is not None and target.picture is target.failed_picture:
            self.feedback_message = f"every classifier failed on item {target.id}'s picture"
            return Status.FAILURE
        if target.picture is not None:
            return Status.SUCCESS
        latest = self.bb.line.windows.deadline(quantities.PICTURE)
        late = since_feed(self.ctx, target, self.bb.now) > latest or target.cleared >= 1
        if target.outcome is not None or target not in self.bb.items or late:
            self.feedback_message = f"no picture for item {target.id}"
            return Status.FAILURE
        return Status.RUNNING


@register
class Classify(Leaf):
    """Classify the oldest undecided item that has a picture, on a worker thread.

    RUNNING while the back end works; SUCCESS with the item's label and rod decided
    (a weak answer becomes ``unknown``: bin 1); FAILURE when the back end fails (a
    broken picture, a service down), so the tree can retry or fall back. A picture this
    back end already found broken fails at once, not asked again (retrying cannot help).
    A picture that does not decode is not the item's: its slot is freed, and the
    pictures received after it are offered to tracking again, so the genuine one can
    still match.

    reads: items (their pictures), recent_pictures, the classifiers. writes: the item's
    prediction, label, rod; pictures (offered again).
    """

    params = (
        Param("backend", Literal["primary", "fallback"], "which classifier: the config's "
              "back end, or the fallback (HSV unless the config says reject)", "primary"),
    )  # fmt: skip
    backend: str

    def initialise(self) -> None:
        self.item = oldest_undecided(self.ctx, with_picture=True)
        self.future: concurrent.futures.Future[Prediction] | None = None
        self.known_bad: str | None = None
        worker = self.ctx.classifiers.get(self.backend)
        if self.item is None or worker is None or self.item.picture is None:
            return
        self.known_bad = worker.known_bad(self.item.picture)
        if self.known_bad is None:
            self.future = worker.submit(self.item.picture)

    def update(self) -> Status:
        if self.item is not None and self.known_bad is not None:
            self.feedback_message = f"bad picture, not retried: {self.known_bad}"
            self.ctx.record.write("classify_skipped", self.bb.now, item=self.item.id,
                                  backend=self.backend, error=self.known_bad)  # fmt: skip
            return Status.FAILURE
        if self.item is None or self.future is None:
            self.feedback_message = f"nothing to classify with {self.backend!r}"
            return Status.FAILURE
        if not self.future.done():
            return Status.RUNNING
        try:
            prediction = self.future.result()
        except ClassifyError as exc:
            self.ctx.record.write(
                "classify_failed",
                self.bb.now,
                item=self.item.id,
                backend=self.backend,
                error=str(exc),
            )
            if isinstance(exc, BadPictureError):
                self._free_picture_slot(self.item)
            else:  # kept: the next classifier may answer; AwaitPicture will not wait on it
                self.item.failed_picture = self.item.picture
            return Status.FAILURE
        if self.item.decided:
            return Status.SUCCESS
        self.item.prediction = prediction
        threshold = self.ctx.config.sorting.threshold
        label = apply_threshold(prediction, threshold).label
        reason = prediction.doubt or (NO_CONFIDENT_LABEL if label == UNKNOWN else "")
        decide(self.ctx, self.item, label, reason)
        if label == UNKNOWN and self.ctx.doubted is not None:
            keep_for_labelling(self.ctx, self.ctx.doubted, self.item, prediction, reason)
        return Status.SUCCESS

    def terminate(self, new_status: Status) -> None:
        if new_status == Status.INVALID and self.future is not None:
            self.future.cancel()

    def _free_picture_slot(self, item: Item) -> None:
        """Drop a picture that does not decode; offer the later ones to tracking again."""
        bad, since = item.picture, item.picture_at or 0.0
        if bad is None or item.decided:
            return
        item.picture = item.picture_at = None
        item.seen = bool(item.evidence)  # a picture that does not decode shows nothing
        if item.anchor is not None and item.anchor[0] == quantities.PICTURE:
            item.anchor = None  # nor does it say where the item is
        owners = [*self.bb.items, *self.bb.items.done.recent(8)]
        taken = {id(i.picture) for i in owners if i.picture is not None}
        again = [(t, data) for t, data in self.bb.recent_pictures
                 if t >= since and data is not bad and id(data) not in taken]  # fmt: skip
        self.bb.pictures.extend(again)
        self.ctx.record.write(
            "picture_dropped", self.bb.now, item=item.id, offered_again=len(again)
        )


def keep_for_labelling(
    ctx: Context, shelf: PictureShelf, item: Item, prediction: Prediction, reason: str
) -> None:
    """Hand the picture of an item vision sent to bin 1 to ``shelf`` (classifier.keep_doubted),
    filed under the model's best guess: ``<guess>/<session>_item<id>_<reason>_<confidence>``.
    The shelf writes it on its own thread; the record says where (or that it was not kept)."""
    if item.picture is None:
        return
    name = f"{ctx.options.get('session', 'run')}_item{item.id}_{reason}_{prediction.confidence:.2f}"
    path = shelf.offer(prediction.label, name, item.picture)
    event = "picture_kept" if path else "picture_not_kept"
    ctx.record.write(event, ctx.bb.now, item=item.id, path=path and str(path),
                     guess=prediction.label)  # fmt: skip


@register
class RejectItem(Leaf):
    """Decide the oldest undecided item as ``unknown``: no rod, bin 1. SUCCESS.

    With no undecided item (it has left the line meanwhile) there is nothing to do: SUCCESS.

    reads: items. writes: the item's label and rod (none).
    """

    params = (Param("reason", str, "why, for the record", "no usable picture"),)
    reason: str

    def update(self) -> Status:
        item = oldest_undecided(self.ctx)
        if item is not None:
            decide(self.ctx, item, UNKNOWN, self.reason)
        return Status.SUCCESS


@register
class SavePicture(Leaf):
    """Collection mode: save the oldest unsaved picture as ``<folder>/<label>/<item>.jpg``.

    The label comes from the command line (``run.py --label``); a relative ``folder`` is
    under the working folder ``run.py`` was started in (the record has each file's full
    path). The file is written on a worker thread. SUCCESS when a picture was handed
    over, RUNNING until one is there.

    reads: items (their pictures), options.label. writes: the item's label (unknown).
    """

    params = (Param("folder", str, "where the dataset grows (one sub-folder per label); "
                    "relative to the working folder"),)  # fmt: skip
    folder: str
    shelf: PictureShelf | None = None

    def update(self) -> Status:
        label = str(self.ctx.options.get("label") or UNKNOWN)
        for item in self.bb.items:
            if item.picture is not None and not item.decided:
                if self.shelf is None:
                    self.shelf = PictureShelf(Path(self.folder), say=self._say, what="collected")
                name = f"{label}_{int(self.bb.now * 1000)}_{item.id}"
                path = self.shelf.offer(label, name, item.picture)
                decide(self.ctx, item, UNKNOWN, "collected")
                event = "picture_saved" if path else "picture_not_saved"
                self.ctx.record.write(event, self.bb.now, item=item.id, path=path and str(path))
                return Status.SUCCESS
        return Status.RUNNING

    def _say(self, event: str, facts: dict[str, Any]) -> None:
        self.ctx.record.write(event, self.bb.now, **facts)

    def shutdown(self) -> None:
        if self.shelf is not None:
            self.shelf.close()
