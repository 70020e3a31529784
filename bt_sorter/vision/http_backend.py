"""A back end that asks any course-compatible classification service over HTTP.

``POST`` the raw picture bytes to the service URL (the course's ``/aisim_tf_pre``) and read
``{"results": [{"label", "confidence"}], "code", "error"}``. Code 1 becomes a
:class:`ClassifyError` carrying the service's reason; so do connection errors and timeouts.
A result may carry ``"doubt"`` (this project's service, :mod:`bt_sorter.vision.serve`): the
answer is then doubted (:attr:`Prediction.doubt`), never acted on; a doubt that is no short
text (:func:`~bt_sorter.vision.classifier.doubt_problem`) makes the answer malformed.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

from bt_sorter.vision.classifier import ClassifyError, Prediction, doubt_problem

MAX_ANSWER_BYTES = 1 << 20


class HttpClassifier:
    """Classifies by posting each picture to ``url``; one request per call, no shared state."""

    name = "http"

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ClassifyError(f"classifier url must be http(s)://, got {url!r}")
        self.url = url
        self.timeout = timeout

    def classify(self, data: bytes) -> Prediction:
        """Label one encoded picture; raises ClassifyError for any failure, with the reason."""
        request = urllib.request.Request(
            self.url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            body = exc.read(MAX_ANSWER_BYTES + 1)
            reason = _error_of(body) or f"HTTP {exc.code}"
            raise ClassifyError(f"service answered {exc.code}: {reason}") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
                raise ClassifyError(f"service timed out after {self.timeout} s") from exc
            raise ClassifyError(f"service unreachable: {exc}") from exc
        if len(body) > MAX_ANSWER_BYTES:
            raise ClassifyError("service answer too large")
        return _parse_answer(body, self.name)

    def close(self) -> None:
        """Nothing held between calls."""


def _error_of(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, str) and error else None


def _parse_answer(body: bytes, backend: str) -> Prediction:
    """The course JSON answer as a Prediction (the result with the highest confidence)."""
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise ClassifyError("service answer is not JSON") from exc
    if not isinstance(answer, dict) or "code" not in answer:
        raise ClassifyError("service answer has no 'code'")
    if answer["code"] != 0:
        raise ClassifyError(f"service refused the picture: {answer.get('error') or 'no reason'}")
    results = answer.get("results")
    if not isinstance(results, list) or not results:
        raise ClassifyError("service answered code 0 with no results")
    best = None
    for result in results:
        if not isinstance(result, dict):
            raise ClassifyError("service result is not an object")
        label, confidence = result.get("label"), result.get("confidence")
        if not isinstance(label, str) or not isinstance(confidence, int | float):
            raise ClassifyError("service result needs a string label and a numeric confidence")
        doubt = result.get("doubt", "")
        if problem := doubt_problem(doubt):
            raise ClassifyError(f"service result's doubt {problem}")
        if best is None or confidence > best[1]:
            best = (label, float(confidence), doubt)
    assert best is not None
    return Prediction(best[0], min(max(best[1], 0.0), 1.0), backend, best[2])
