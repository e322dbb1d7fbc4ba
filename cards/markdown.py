"""Markdown for cards: one Jinja2 environment in which only author-trusted text is printed raw.

Every value that reaches a template from a patient record (displays, references, free text) is escaped so it cannot
inject Markdown or HTML into an EHR's card; text from a model's manifest is wrapped in Markup and printed as written.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~!{}])")


def md_escape(text: str) -> str:
    """Escape text for GitHub-flavored Markdown: HTML entities, Markdown punctuation, line breaks folded."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    if re.match(r"^(\d+[.)]|[-+=])(\s|$)", text):
        text = "\\" + text  # would start a list item at the beginning of a line
    return text


def trusted(text: str | None) -> Markup | None:
    """Mark author-written text (manifest, templates' own data) as safe to print raw."""
    return None if text is None else Markup(text)


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return md_escape(str(value))


@lru_cache(maxsize=4)
def environment(extra_dir: str | None = None) -> Environment:
    """The card template environment (package templates; a model folder may add its own)."""
    from jinja2 import ChoiceLoader, FileSystemLoader

    loaders = [PackageLoader("cards", "templates")]
    if extra_dir:
        loaders.insert(0, FileSystemLoader(extra_dir))
    env = Environment(
        loader=ChoiceLoader(loaders),
        finalize=_finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        auto_reload=False,  # shipped files, fixed while serving: no stat of every template and partial per card
    )
    return env
