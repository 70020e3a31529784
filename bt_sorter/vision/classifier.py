"""One interface for every classifier back end, and the worker that keeps it off the tick.

A back end answers "what is in this picture" for the encoded bytes the line sent
(JPEG or PNG). It may be slow (a network, an HTTP call), so the controller never
calls it from a tick: :class:`ClassifierWorker` runs it on a thread and hands back a
``Future``; the leaf returns RUNNING until the future is done.

Back ends (see :func:`make_classifier`):
  ``torch``  in-process ResNet (bt_sorter.vision.torch_backend)
  ``http``   any course-compatible service (bt_sorter.vision.http_backend)
  ``hsv``    the transparent OpenCV colour rule, no weights (bt_sorter.vision.hsv)
  ``mqtt``   classifier workers over MQTT 5 (bt_sorter.vision.mqtt_backend); it has a
             ``submit`` of its own and holds no thread while a worker answers
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

UNKNOWN = "unknown"
NO_CONFIDENT_LABEL = "no confident label"  # why a weak answer's item rides to bin 1


class ClassifyError(Exception):
    """The back end could not answer for this picture (broken picture, service down)."""


class BadPictureError(ClassifyError):
    """The bytes do not decode to a picture. Retrying will not help."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One answer: the label, its confidence (0..1), and which back end gave it.

    ``doubt`` says why the picture is not one the model was trained for (a black frame, an
    empty belt, another object): such an answer is never acted on, whatever its confidence.
    """

    label: str
    confidence: float
    backend: str
    doubt: str = ""


MAX_DOUBT_CHARS = 80  # a doubt from a service or worker longer than this is malformed


def doubt_problem(doubt: object) -> str | None:
    """What is wrong with a doubt that came over the wire, or None when it is one: text of
    at most :data:`MAX_DOUBT_CHARS` printable characters (``""``: not doubted). The known
    reasons are :data:`bt_sorter.vision.oddity.DOUBTS`; another one (a newer service's) is
    taken as it is: a doubted answer is never acted on, whatever its reason."""
    if not isinstance(doubt, str):
        return f"must be text, got {type(doubt).__name__}"
    if len(doubt) > MAX_DOUBT_CHARS:
        return f"is {len(doubt)} characters long, more than {MAX_DOUBT_CHARS}"
    if not doubt.isprintable():
        return f"has characters that are not printable: {doubt[:MAX_DOUBT_CHARS]!r}"
    return None


@runtime_checkable
class Classifier(Protocol):
    """A classifier back end. ``classify`` may block; it raises :class:`ClassifyError`."""

    name: str

    def classify(self, data: bytes) -> Prediction: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncClassifier(Classifier, Protocol):
    """A back end that answers through futures of its own (a request over the network)."""

    def submit(self, data: bytes) -> concurrent.futures.Future[Prediction]: ...


class ClassifierWorker:
    """Runs a :class:`Classifier` on a worker thread so a tick never waits for it.

    It remembers the last ``remember`` pictures its back end found broken
    (:class:`BadPictureError`), so a retry of the same picture is refused at once
    (:meth:`known_bad`) instead of asking the back end again.
    """

    def __init__(self, classifier: Classifier, workers: int = 1, remember: int = 256) -> None:
        self.classifier = classifier
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"classify-{classifier.name}"
        )
        self._remember = remember
        self._bad: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, data: bytes) -> concurrent.futures.Future[Prediction]:
        """Start classifying ``data``; the future holds a Prediction or a ClassifyError."""
        if isinstance(self.classifier, AsyncClassifier):
            return self.classifier.submit(data)
        return self._pool.submit(self._classify, data)

    def known_bad(self, data: bytes) -> str | None:
        """Why this back end already found ``data`` broken, or None if it has not."""
        with self._lock:
            return self._bad.get(_digest(data))

    def _classify(self, data: bytes) -> Prediction:
        try:
            return self.classifier.classify(data)
        except BadPictureError as exc:
            with self._lock:
                self._bad[_digest(data)] = str(exc)
                while len(self._bad) > self._remember:
                    self._bad.popitem(last=False)
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.classifier.close()


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def apply_threshold(prediction: Prediction, threshold: float) -> Prediction:
    """A weak answer (confidence below ``threshold``) or a doubted one becomes :data:`UNKNOWN`."""
    if prediction.doubt or prediction.confidence < threshold:
        return Prediction(UNKNOWN, prediction.confidence, prediction.backend, prediction.doubt)
    return prediction
