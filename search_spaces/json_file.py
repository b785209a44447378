"""Reading a JSON result file with one-line errors: the one reader under `ArchRecord.load` and the
result records of `nas.records`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path, error: type[Exception], missing: str, unreadable: str) -> Any:
    """The JSON value in `path`; a missing file raises `error("{path} {missing}")`, an unreadable or
    corrupt one `error("{path} {unreadable}")` with `{why}` in `unreadable` filled in."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path} {missing}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path} {unreadable.format(why=exc)}") from None
