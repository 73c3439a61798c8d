"""Role codes: how the dataset stores the policy's masks, and how they are read back.

A stored mask holds each pixel's role only (0 background, 1 place, 2 pick), not its value: the
value depends on the episode's skill (`models.types.MASK_CODING`), which the episode's metadata
records. Decoding with `role_values` of that skill gives the float mask the policy receives at run
time, so datasets recorded before masks carried the skill stay readable with today's coding.
Also the "box instead of mask" ablation, which works on the codes.
"""

from __future__ import annotations

import numpy as np

from models.types import MASK_CODING, PICK_MASK_VALUE, PLACE_MASK_VALUE, MaskCoding, Skill

ROLE_CODES = {0: 0.0, 1: PLACE_MASK_VALUE, 2: PICK_MASK_VALUE}
ROLE_VALUES_NEAR = np.array([ROLE_CODES[c] for c in range(3)], dtype=np.float32)


def encode_mask(mask: np.ndarray, coding: MaskCoding = MASK_CODING) -> np.ndarray:
    """Float role mask painted with `coding` -> uint8 role codes (0 / 1 place / 2 pick).

    The codes keep the role only: the skill is the episode's (its metadata), and `decode_mask`
    with `role_values` of that skill gives the values back. Storing roles keeps datasets recorded
    before masks carried the skill (place 0.5 for every skill) readable with today's coding.
    """
    m = np.asarray(mask, dtype=np.float32)
    codes = np.zeros(m.shape, dtype=np.uint8)
    codes[np.isin(m, np.array(list(coding.place.values()), dtype=np.float32))] = 1
    codes[np.isin(m, np.array([coding.pick, coding.drawer], dtype=np.float32))] = 2
    return codes


def role_values(skill: Skill | str, coding: MaskCoding = MASK_CODING) -> np.ndarray:
    """(3,) float32: the mask value of role code 0 / 1 / 2 in a task of `skill`."""
    place = 0.0 if Skill(skill) is Skill.OPEN_DRAWER else coding.value("place", skill)
    return np.array([0.0, place, coding.value("pick", skill)], dtype=np.float32)


def decode_mask(codes: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """uint8 role codes -> float32 role mask, as the policy receives it at run time.

    `values`: `role_values` of each sample's skill, shape (3,) or (N, 3) for codes (N, ...);
    None: `place_near`'s (pick 1.0, place 0.5).
    """
    if values is None:
        values = ROLE_VALUES_NEAR
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        return values[codes]
    flat = codes.reshape(len(codes), -1)
    return np.take_along_axis(values, flat.astype(np.int64), axis=1).reshape(codes.shape)


def masks_to_boxes(codes: np.ndarray) -> np.ndarray:
    """The 'box instead of mask' ablation: each role's pixels replaced by their filled bounding box.

    Works on role codes of any leading shape (..., H, W); place is painted first, then pick, as the
    perception pipeline paints them.
    """
    out = np.zeros_like(codes)
    flat_in = codes.reshape(-1, *codes.shape[-2:])
    flat_out = out.reshape(-1, *codes.shape[-2:])
    for i, frame in enumerate(flat_in):
        for code in (1, 2):
            ys, xs = np.nonzero(frame == code)
            if len(ys):
                flat_out[i, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = code
    return out
