"""Exports for proof of consent: a client's history (JSON, CSV, printable HTML) in
:mod:`.history`, the practice's status list (CSV, streamed) in :mod:`.status_list` and
the one-step proof bundle in :mod:`.bundle`, any of them as one download in
:mod:`.download`; this package gathers their public API.

Every function takes the host and a practice (tenant) and reads only that practice's
rows: another practice's client gives an empty history or :class:`NotFound`, never
someone else's data.  Nothing here writes or commits.  Exports work after the app was
deactivated (the data is kept) and after a client was erased (the pseudonymous proof
is kept; name and e-mail come from the host and are then simply unknown).

CSV files are RFC 4180 (comma, CRLF, UTF-8).  Text that a spreadsheet would run as a
formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is prefixed
with an apostrophe, so a note or user agent cannot become a formula in Excel.
"""

from samtycke_plugin.export.bundle import bundle_filename, proof_bundle
from samtycke_plugin.export.common import csv_safe
from samtycke_plugin.export.download import Download, client_download
from samtycke_plugin.export.history import (
    HISTORY_COLUMNS,
    client_history,
    client_history_csv,
    client_history_html,
    client_history_json,
)
from samtycke_plugin.export.status_list import (
    STATUS_COLUMNS,
    practice_status_count,
    practice_status_csv,
)

__all__ = [
    "HISTORY_COLUMNS",
    "STATUS_COLUMNS",
    "Download",
    "bundle_filename",
    "client_download",
    "client_history",
    "client_history_csv",
    "client_history_html",
    "client_history_json",
    "csv_safe",
    "practice_status_count",
    "practice_status_csv",
    "proof_bundle",
]
