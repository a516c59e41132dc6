"""WBI request signing (bili-api.md §6): the `w_rid`/`wts` pair some endpoints demand."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from urllib.parse import quote, urlencode

MIXIN_TAB = (
    46, 47, 18, 2, 53, 8, 23, 32, 15, 50, 10, 31, 58, 3, 45, 35, 27, 43, 5, 49, 33, 9, 42, 19, 29, 28, 14,
    39, 12, 38, 41, 13, 37, 48, 7, 16, 24, 55, 40, 61, 26, 17, 0, 1, 60, 51, 30, 4, 22, 25, 54, 21, 56, 59,
    6, 63, 57, 62, 11, 36, 20, 34, 44, 52,
)  # fmt: skip
_FORBIDDEN = re.compile(r"[!'()*]")

Params = Mapping[str, str | int | float]


def key_of(url: str) -> str:
    """`img_key`/`sub_key`: the file name of a `wbi_img` URL without its extension."""
    return url.rsplit("/", 1)[-1].split(".", 1)[0]


def mixin_key(img_key: str, sub_key: str) -> str:
    """The 32-character salt: `img_key + sub_key` permuted by MIXIN_TAB."""
    s = img_key + sub_key
    if len(s) != 64:
        raise ValueError(f"WBI keys must be 32 characters each, got {len(img_key)} and {len(sub_key)}")
    return "".join(s[i] for i in MIXIN_TAB)[:32]


def signed_query(params: Params, wts: int) -> str:
    """The string that is hashed: params plus `wts`, cleaned, sorted, RFC 3986-encoded."""
    items = {k: _FORBIDDEN.sub("", str(v)) for k, v in params.items() if k not in ("w_rid", "wts")}
    items["wts"] = str(wts)
    return urlencode(sorted(items.items()), quote_via=quote)


def w_rid(params: Params, wts: int, mixin: str) -> str:
    """The signature of `params` at `wts` under `mixin`."""
    return hashlib.md5((signed_query(params, wts) + mixin).encode()).hexdigest()


def sign(params: Params, wts: int, mixin: str) -> dict[str, str]:
    """`params` as strings plus `wts` and `w_rid`, ready to send."""
    out = {k: str(v) for k, v in params.items()}
    out["wts"] = str(wts)
    out["w_rid"] = w_rid(params, wts, mixin)
    return out
