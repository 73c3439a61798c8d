"""Reading simulator ground truth (segmentation ids + name -> id labels) for the oracle backends.

The detector and the segmenter both need the same two things, name lookup and a clear error on
real camera frames, so they live here once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.types import GroundTruth, ModelError


def require_truth(truth: GroundTruth | None, who: str) -> tuple[np.ndarray, Mapping[str, int]]:
    """Return `(segmentation, labels)` or raise a one-line ModelError naming the backend `who`.

    Real cameras deliver frames without truth; the error says which backend to configure instead,
    because that is the only fix the user can make.
    """
    segmentation = getattr(truth, "segmentation", None) if truth is not None else None
    labels = getattr(truth, "labels", None) if truth is not None else None
    if segmentation is None or labels is None:
        raise ModelError(
            f"{who} needs simulator frames with segmentation and labels; this frame has none "
            "(with real cameras configure a model backend instead)"
        )
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2:
        raise ModelError(
            f"{who} expects an (H, W) object-id segmentation, got shape {segmentation.shape}"
        )
    return segmentation, labels


def find_label(labels: Mapping[str, int], name: str) -> int | None:
    """The object id for `name`: exact match first, then case- and whitespace-insensitive."""
    if name in labels:
        return int(labels[name])
    wanted = " ".join(name.split()).casefold()
    for label, object_id in labels.items():
        if " ".join(label.split()).casefold() == wanted:
            return int(object_id)
    return None
