"""The danmaku word cloud: jieba segmentation, stop words out, the most frequent words in.

jieba's default dictionary is loaded once per process (about a second), on the first request. Stop
words are the common function words of Chinese plus danmaku filler that says nothing about a
video's topic; single characters and bare numbers are dropped too, since in danmaku they are mostly
interjections (啊, 哦) and timestamps.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import jieba

STOP_WORDS = frozenset(
    line.strip()
    for line in (Path(__file__).parent / "stopwords_zh.txt").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
)
TOKEN = re.compile(r"[\w\u4e00-\u9fff]+")
_init_lock = threading.Lock()
_initialised = False


def _init() -> None:
    """Load jieba's dictionary once, quietly (it logs to stderr otherwise)."""
    global _initialised
    with _init_lock:
        if not _initialised:
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _initialised = True


def _keep(word: str) -> bool:
    return (
        len(word) >= 2
        and not word.isdigit()
        and word.lower() not in STOP_WORDS
        and bool(TOKEN.fullmatch(word))
    )


def word_counts(texts: Iterable[str], top: int) -> list[tuple[str, int]]:
    """The `top` most frequent meaningful words of the texts, ties broken by the word."""
    _init()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w in jieba.lcut(text) if _keep(w))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
