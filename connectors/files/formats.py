"""What a file is, from its first bytes, whatever its name says.

Text (CSV), Parquet and .xlsx workbooks are read; gzip, bzip2, xz and a zip holding one file are
opened transparently; anything else is refused by what it is ("this is a PDF document").
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import tempfile
import weakref
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

HEAD_BYTES = 8192
READABLE = ("csv", "parquet", "xlsx")
COMPRESSED: dict[str, Callable[[str | Path], IO[bytes]]] = {
    "gzip": lambda p: gzip.open(p, "rb"),  # noqa: SIM115 - the caller closes the stream
    "bz2": lambda p: bz2.open(p, "rb"),  # noqa: SIM115
    "xz": lambda p: lzma.open(p, "rb"),  # noqa: SIM115
}
# files a zip tool adds beside the real one
ZIP_JUNK = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")

EXPORT = "export the table as CSV or .xlsx and import that"
SAVE_AS = "open it in Excel or LibreOffice and save it as .xlsx or CSV"
UNPACK = "unpack it and import the file inside"


class UnreadableFile(Exception):
    """The file is something other than a table this reader can read."""


@dataclass
class Source:
    """Where the table's bytes are: the file itself, inside a compressed stream, or in a zip member."""

    path: Path
    format: str  # csv | parquet | xlsx
    compression: str | None = None  # gzip | bz2 | xz | zip
    member: str | None = None  # the file inside a zip
    _cleanup: list = field(default_factory=list, repr=False)

    def open(self) -> IO[bytes]:
        """A fresh binary stream of the table's bytes (decompressed)."""
        if self.compression in COMPRESSED:
            return COMPRESSED[self.compression](self.path)
        if self.compression == "zip":
            z = zipfile.ZipFile(self.path)
            f = z.open(self.member)
            weakref.finalize(f, z.close)
            return f
        return open(self.path, "rb")

    def describe(self) -> dict[str, str]:
        out = {"format": self.format}
        if self.compression:
            out["compression"] = self.compression
        if self.member:
            out["member"] = self.member
        return out


def _ole2(head: bytes) -> tuple[str, str]:
    # the directory names its streams in UTF-16
    if "Workbook".encode("utf-16-le") in head or "Book".encode("utf-16-le") in head:
        return "an old Excel .xls workbook", SAVE_AS
    if "WordDocument".encode("utf-16-le") in head:
        return "an old Word .doc document", EXPORT
    if "PowerPoint".encode("utf-16-le") in head:
        return "an old PowerPoint .ppt file", EXPORT
    return "an old Microsoft Office (OLE2) file, perhaps an .xls workbook", SAVE_AS


def sniff(head: bytes) -> tuple[str, str, str]:
    """(kind, what it is, what to do): kind is text, parquet, zip, one of COMPRESSED, or refused."""
    h = head
    if h.startswith(b"PAR1"):
        return "parquet", "a Parquet file", ""
    if h.startswith(b"\x1f\x8b"):
        return "gzip", "a gzip file", ""
    if h.startswith(b"BZh") and h[4:10] == b"1AY&SY":
        return "bz2", "a bzip2 file", ""
    if h.startswith(b"\xfd7zXZ\x00"):
        return "xz", "an xz file", ""
    if h.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip", "a zip archive", ""
    signatures: list[tuple[bool, str, str]] = [
        (h.startswith(b"%PDF"), "a PDF document", EXPORT),
        (h.startswith(b"\x89PNG\r\n\x1a\n"), "an image (PNG)", EXPORT),
        (h.startswith(b"\xff\xd8\xff"), "an image (JPEG)", EXPORT),
        (h.startswith((b"GIF87a", b"GIF89a")), "an image (GIF)", EXPORT),
        (h.startswith(b"RIFF") and h[8:12] == b"WEBP", "an image (WebP)", EXPORT),
        (h.startswith((b"II*\x00", b"MM\x00*")), "an image (TIFF)", EXPORT),
        (h.startswith(b"BM") and len(h) > 14 and h[6:10] == b"\x00\x00\x00\x00", "an image (BMP)", EXPORT),
        (h[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc", b"ftypavif"), "an image (HEIC/AVIF)", EXPORT),
        (h.startswith(b"Rar!\x1a\x07"), "a RAR archive", UNPACK),
        (h.startswith(b"7z\xbc\xaf\x27\x1c"), "a 7-Zip archive", UNPACK),
        (h.startswith(b"\x28\xb5\x2f\xfd"), "a zstd-compressed file", UNPACK),
        (h[257:262] == b"ustar", "a tar archive", UNPACK),
        (h.startswith(b"SQLite format 3\x00"), "an SQLite database", EXPORT),
        (h.startswith(b"\x7fELF") or (h.startswith(b"MZ") and b"\x00" in h[:64]), "a program, not data", EXPORT),
        (h.startswith(b"{\\rtf"), "an RTF document", EXPORT),
    ]
    for hit, what, todo in signatures:
        if hit:
            return "refused", what, todo
    if h.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        what, todo = _ole2(h)
        return "refused", what, todo
    lead = h.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lead.startswith((b"<!doctype html", b"<html")):
        return "refused", "an HTML page (a web page or an error page saved under this name?)", EXPORT
    if lead.startswith(b"<?xml"):
        if b"urn:schemas-microsoft-com:office:spreadsheet" in h:
            return "refused", "an Excel 2003 XML spreadsheet", SAVE_AS
        return "refused", "an XML document", EXPORT
    if _binary(h):
        return "refused", "binary data, not text", EXPORT
    return "text", "a text file", ""


_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\f\v\x1b")


def _binary(h: bytes) -> bool:
    """Many NULs or control bytes outside UTF-16/32 text (a stray NUL in a CSV is still text)."""
    if not h or utf16_or_32(h):
        return False
    control = len(h) - len(h.translate(None, _CONTROL))
    if h.count(0) > len(h) // 20 or control > len(h) // 10:
        return True
    # random-looking bytes: some control bytes among mostly non-ASCII ones that are not UTF-8
    # (text in a legacy multibyte encoding has many high bytes but no control bytes)
    high = sum(1 for b in h if b >= 0x80)
    if control <= len(h) // 40 or high <= len(h) // 4:
        return False
    try:
        h.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(h) - 3  # not only a character cut at the end of the sample
    return False


def utf16_or_32(h: bytes) -> bool:
    """Text in UTF-16/32 (BOM or not): NULs fall on every other (or three of four) byte."""
    if h.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        return True
    h = h[: len(h) // 4 * 4]
    if len(h) < 8:
        return False
    even, odd = h[0::2], h[1::2]
    return (
        max(even.count(0) / len(even), odd.count(0) / len(odd)) > 0.4
        and min(even.count(0), odd.count(0)) < len(h) // 8 + 1
    )


def _zip_kind(path: Path, name: str) -> tuple[str, str | None]:
    """('xlsx', None) for a workbook, ('member', inner name) for a zip holding one file; else refused."""
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise UnreadableFile(f"{name}: this is a damaged zip archive ({exc})") from exc
    with z:
        names = z.namelist()
        if "[Content_Types].xml" in names:
            if "xl/workbook.xml" in names:
                return "xlsx", None
            if "xl/workbook.bin" in names:
                raise UnreadableFile(f"{name}: this is an Excel binary workbook (.xlsb); {SAVE_AS}")
            if "word/document.xml" in names:
                raise UnreadableFile(f"{name}: this is a Word document (.docx); {EXPORT}")
            if any(n.startswith("ppt/") for n in names):
                raise UnreadableFile(f"{name}: this is a PowerPoint file (.pptx); {EXPORT}")
        if "mimetype" in names:
            mime = z.read("mimetype")[:100].decode("ascii", "replace")
            if "spreadsheet" in mime:
                raise UnreadableFile(f"{name}: this is an OpenDocument spreadsheet (.ods); {SAVE_AS}")
            if "opendocument" in mime or "epub" in mime:
                raise UnreadableFile(f"{name}: this is a document ({mime}), not a table; {EXPORT}")
        files = [i for i in z.infolist() if not i.is_dir() and not any(j in i.filename for j in ZIP_JUNK)]
        if not files:
            raise UnreadableFile(f"{name}: the zip archive holds no file")
        if len(files) > 1:
            shown = ", ".join(i.filename for i in files[:10]) + (
                f" and {len(files) - 10} more" if len(files) > 10 else ""
            )
            raise UnreadableFile(
                f"{name}: the zip archive holds {len(files)} files ({shown}); import one file at a time: "
                "zip one file, or unpack it"
            )
        if files[0].flag_bits & 0x1:
            raise UnreadableFile(f"{name}: the file in the zip archive is password-protected; unpack it first")
        return "member", files[0].filename


def _spool(stream: IO[bytes], suffix: str, src: Source) -> Path:
    """Copy a decompressed stream to a temporary file (Parquet and xlsx need to seek); removed with `src`."""
    tmp = tempfile.NamedTemporaryFile(prefix="bulkops-", suffix=suffix, delete=False)  # noqa: SIM115 - closed below
    with tmp, stream:
        shutil.copyfileobj(stream, tmp, 1 << 20)
    path = Path(tmp.name)
    src._cleanup.append(weakref.finalize(src, path.unlink, missing_ok=True))
    return path


def identify(path: Path, name: str | None = None) -> Source:
    """Look at the bytes of `path` and say how to read it.

    Raises:
        UnreadableFile: what the file is instead, naming it, and what to do.
    """
    name = name or path.name
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    kind, what, todo = sniff(head)
    src = Source(path, "csv")
    if kind == "zip":
        zkind, member = _zip_kind(path, name)
        if zkind == "xlsx":
            src.format = "xlsx"
            return src
        src.compression, src.member = "zip", member
    elif kind in COMPRESSED:
        src.compression = kind
    elif kind == "refused":
        if name.lower().endswith(".parquet") and what.startswith("binary data"):
            raise UnreadableFile(
                f"{name}: not a Parquet file (a Parquet file starts with PAR1): damaged, or another kind of "
                "file under a .parquet name; write it again as Parquet, or export the table as CSV"
            )
        raise UnreadableFile(f"{name}: this is {what}, not a table this import can read; {todo}")
    else:
        src.format = "parquet" if kind == "parquet" else "csv"
        return src
    # inside the container
    try:
        with src.open() as inner:
            ihead = inner.read(HEAD_BYTES)
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError, RuntimeError) as exc:
        raise UnreadableFile(f"{name}: cannot open the {src.compression} content: {exc}") from exc
    ikind, iwhat, itodo = sniff(ihead)
    inside = f"{src.member!r} in the zip archive" if src.member else f"the {src.compression} content"
    if ikind == "zip":
        tmp = _spool(src.open(), ".zip", src)
        if _zip_kind(tmp, name)[0] != "xlsx":
            raise UnreadableFile(f"{name}: {inside} is a zip archive in turn; {UNPACK}")
        src.path, src.format = tmp, "xlsx"
        return src
    if ikind == "parquet":
        src.path, src.format = _spool(src.open(), ".parquet", src), "parquet"
        return src
    if ikind != "text":
        raise UnreadableFile(f"{name}: {inside} is {iwhat}, not a table this import can read; {itodo or UNPACK}")
    return src
