"""The data folder's lock turns every file-system refusal into one line (DataFolderUnusable),
including a parent folder the mirror's user may not enter: stat itself then fails."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from mirror.errors import DataFolderUnusable
from mirror.stores.folder_lock import FolderLock


def test_a_folder_behind_a_parent_that_may_not_be_entered_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root the kernel lets every stat through, so the refusal a service user gets from a
    # 0700 parent (systemd's /var/lib/private) is played by the stat call itself.
    root = tmp_path / "private" / "data"
    real_stat = Path.stat

    def refusing(path: Path, **kwargs: bool) -> object:
        if path == root:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, **kwargs)

    monkeypatch.setattr(Path, "stat", refusing)
    with pytest.raises(DataFolderUnusable) as refused:
        FolderLock(root).acquire(create=True)
    assert str(refused.value) == f"cannot use data folder {root} (storage.path): permission denied"
