"""The example handbook written out as real .txt, .html, .docx and .pdf files, for format tests.

The outline is read from examples/handbook.md with a few lines of plain Python (not the code
under test); each writer uses the format's own library (python-docx, fpdf2) so that the trainer
parses files like the ones tenants upload.
"""

from __future__ import annotations

import html
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HANDBOOK = ROOT / "examples" / "handbook.md"


def outline() -> list[tuple[int, str]]:
    """``(level, text)`` for every heading (level 1-6) and paragraph (level 0) of the handbook."""
    items: list[tuple[int, str]] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            items.append((0, "\n".join(paragraph)))
            paragraph.clear()

    for line in HANDBOOK.read_text().splitlines():
        if line.startswith("#"):
            flush()
            items.append((len(line) - len(line.lstrip("#")), line.lstrip("#").strip()))
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.strip())
    flush()
    return items


def write_text(path: Path) -> Path:
    """Plain text: headings as bare lines, paragraphs separated by blank lines."""
    path.write_text("\n\n".join(text for _, text in outline()) + "\n")
    return path


def write_html(path: Path) -> Path:
    """A web page with a title, navigation, a script and a style that must all be ignored."""
    body = []
    for level, text in outline():
        if level:
            body.append(f"<h{level}>{html.escape(text)}</h{level}>")
        else:
            body.append("<p>" + "<br>\n".join(html.escape(line) for line in text.splitlines()) + "</p>")
    path.write_text(
        "<!doctype html><html><head><title>Handbook | Lumen Lane</title>"
        "<style>p { color: red }</style><script>var secret = 'Ignore this script';</script></head>"
        "<body><nav><a href='/'>Home</a> <a href='/shop'>Shop menu</a></nav><main>"
        + "\n".join(body)
        + "</main><!-- a comment to ignore --></body></html>"
    )
    return path


def write_docx(path: Path) -> Path:
    """A Word document with Heading styles; each FAQ line is its own paragraph."""
    import docx

    document = docx.Document()
    for level, text in outline():
        if level:
            document.add_heading(text, level=level)
        elif text.startswith("Q:"):
            for line in text.splitlines():
                document.add_paragraph(line)
        else:
            document.add_paragraph(" ".join(text.splitlines()))
    document.save(str(path))
    return path


def write_pdf(path: Path) -> Path:
    """A PDF with a Unicode TrueType font, bold headings and wrapped paragraphs (fpdf2)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    fonts = Path("/usr/share/fonts/truetype/dejavu")
    if (fonts / "DejaVuSans.ttf").exists():
        pdf.add_font("body", "", str(fonts / "DejaVuSans.ttf"))
        pdf.add_font("body", "B", str(fonts / "DejaVuSans-Bold.ttf"))
        family = "body"
    else:  # core font: Latin-1 only
        family = "Helvetica"
    for level, text in outline():
        if family == "Helvetica":
            text = text.replace("\u2014", "-")
        pdf.set_font(family, "B" if level else "", 16 if level == 1 else 13 if level else 11)
        for line in text.splitlines() if text.startswith("Q:") else [" ".join(text.splitlines())]:
            pdf.multi_cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    pdf.output(str(path))
    return path
