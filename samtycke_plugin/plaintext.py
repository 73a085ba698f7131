"""Consent texts as clean plain text (for the plain-text part of a mail): the Markdown is
parsed by markdown-it, as :func:`samtycke_plugin.text.render_html` parses it, and its
syntax tree written out without Markdown's markers (no ``##``, ``**``, ``[…](…)``).
"""

from __future__ import annotations

from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

#: The preset :mod:`samtycke_plugin.text` renders HTML with: both parts of a mail read
#: the same structure out of a text.
_md = MarkdownIt("js-default")

#: Links whose address the HTML part keeps (the sanitizer's allow-list) show it here too.
_SHOWN_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_BULLET = "• "
_RULE = "—" * 24
_QUOTE = "| "


def render_plain(body: str) -> str:
    """The Markdown ``body`` as plain text: headings and paragraphs as lines of their own,
    lists with bullets or numbers, links as "label (address)"."""
    root = SyntaxTreeNode(_md.parse(body))
    lines = _blocks(root.children, tight=False).split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


def _blocks(nodes: Sequence[SyntaxTreeNode], *, tight: bool) -> str:
    parts = [part for part in (_block(node) for node in nodes) if part]
    return ("\n" if tight else "\n\n").join(parts)


def _block(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind in ("paragraph", "heading", "inline"):
        return _inline_of(node)
    if kind in ("bullet_list", "ordered_list"):
        return _list(node)
    if kind == "blockquote":
        inner = _blocks(node.children, tight=False)
        return "\n".join((_QUOTE + line).rstrip() for line in inner.split("\n"))
    if kind == "hr":
        return _RULE
    if kind in ("code_block", "fence", "html_block"):
        return "\n".join("    " + line for line in node.content.rstrip("\n").split("\n"))
    if kind == "table":
        return "\n".join(_row(row) for row in node.walk() if row.type == "tr")
    return _blocks(node.children, tight=False)


def _inline_of(node: SyntaxTreeNode) -> str:
    if node.type == "inline":
        return _inline(node.children)
    return "".join(_inline(child.children) for child in node.children if child.type == "inline")


def _list(node: SyntaxTreeNode) -> str:
    # markdown-it hides the paragraphs of a tight list's items.
    tight = any(
        child.type == "paragraph"
        and child.nester_tokens is not None
        and child.nester_tokens.opening.hidden
        for item in node.children
        for child in item.children
    )
    start = node.attrs.get("start", 1)
    number = start if isinstance(start, int) else 1
    items = []
    for offset, item in enumerate(node.children):
        marker = f"{number + offset}. " if node.type == "ordered_list" else _BULLET
        first, *rest = _blocks(item.children, tight=tight).split("\n")
        indent = " " * len(marker)
        items.append(
            marker + first + "".join("\n" + (indent + line if line else "") for line in rest)
        )
    return ("\n" if tight else "\n\n").join(items)


def _row(row: SyntaxTreeNode) -> str:
    return "  ".join(_inline_of(cell) for cell in row.children).strip()


def _inline(nodes: Sequence[SyntaxTreeNode]) -> str:
    out: list[str] = []
    for node in nodes:
        kind = node.type
        if kind in ("text", "code_inline", "html_inline"):
            out.append(node.content)
        elif kind == "softbreak":
            # A line break in the source is a space in the HTML part: mail clients wrap.
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "link":
            out.append(_link(_inline(node.children), str(node.attrs.get("href", ""))))
        else:  # strong, em, s, image (its alt text)
            out.append(_inline(node.children))
    return "".join(out)


def _link(label: str, href: str) -> str:
    if not href.lower().startswith(_SHOWN_SCHEMES):
        return label
    shown = href.split(":", 1)[1] if href.lower().startswith(("mailto:", "tel:")) else href
    if not label or label in (shown, href):
        return shown
    return f"{label} ({shown})"
