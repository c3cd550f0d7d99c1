"""Writing a folder or a file so that its readers see the old one or the new one whole, never half of it.

Both write beside the target (the same file system, so a rename moves it into place in one step) and give the
result the permissions `open()` and `mkdir()` would have given it under the umask. A crash is an exception or a
kill of the process; nothing here syncs to disk, so what a power loss leaves is the file system's to say.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@dataclasses.dataclass
class StagedFolder:
    path: str  # the temporary folder to write into
    previous: str | None = None  # once in place: where an earlier OUT was kept (keep_previous), else None


@contextlib.contextmanager
def staged_folder(out: str, keep_previous: bool = False, staging: str | None = None) -> Iterator[StagedFolder]:
    """Write a folder that replaces OUT whole: `with staged_folder(out) as staged:` write into `staged.path`;
    when the block ends without an exception that folder is renamed to OUT.

    The folder is new, beside OUT (`.NAME.XXXXXXXX.partial`, or `staging` when given: one left there by an earlier
    kill is removed first) and gets the usual permissions; once written, so do the plain files at its top (some
    writers make private temporary files). An earlier OUT is replaced only after the new folder is complete: with
    `keep_previous`, one that is not empty is renamed to OUT.previous-YYYYMMDD-HHMMSS (`staged.previous`) and kept;
    otherwise it is moved into a `.NAME.XXXXXXXX.old` folder beside OUT, the new folder renamed into place, and only
    then removed. Which OUT may be replaced is the caller's to check before.

    A crash leaves: while writing, OUT as it was and the partial folder (removed on an exception); between the
    two renames, OUT absent and the earlier one whole in OUT.previous-DATE or `.NAME.XXXXXXXX.old/previous` (put
    back on an exception); after them, the new OUT (and, at the worst, the `.old` folder not yet removed)."""
    parent = os.path.dirname(out)
    if staging is None:
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".partial", dir=parent)
    else:
        shutil.rmtree(staging, ignore_errors=True)
        os.mkdir(staging)
    umask = _umask()
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private
    staged = StagedFolder(staging)
    try:
        yield staged
        for entry in os.scandir(staging):
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, 0o666 & ~umask)
        if not os.path.lexists(out):
            os.replace(staging, out)
            return
        holder = None
        if keep_previous and os.listdir(out):
            aside = f"{out}.previous-{time.strftime('%Y%m%d-%H%M%S')}"
        else:
            holder = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".old", dir=parent)
            aside = os.path.join(holder, "previous")
        try:
            os.replace(out, aside)
            try:
                os.replace(staging, out)
            except BaseException:
                os.replace(aside, out)
                raise
        except BaseException:
            if holder:
                with contextlib.suppress(OSError):
                    os.rmdir(holder)  # only when empty: the earlier OUT is back in place
            raise
        if holder:
            shutil.rmtree(holder, ignore_errors=True)
        else:
            staged.previous = aside
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_file_atomic(path: str, write: Callable[[str], object]) -> None:
    """`write(tmp)` writes a temporary file beside PATH (`.NAME.XXXXXXXX`), which is then renamed over PATH with
    the usual permissions. A crash leaves: before the rename, PATH as it was (on an exception the temporary file
    is removed; after a kill it stays); after it, the new PATH."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path) or ".")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
