"""Where a command may write: one rule for every file or folder a command-line tool writes.

A matting researcher points these tools at the only copy of a dataset, so every output (``predict --out``,
``evaluation --out`` / ``--pred-dir``, ``metrics --out``, ``export --out``, ``checkpoints ship``, ``calibration
ship``, the pipeline's ``--runs-dir``) is checked by :func:`check_output` (a file) or :func:`check_output_folder`
(a folder) before any work is done:

1. never inside a dataset's inputs or ground truth, ``--force`` or not: ``Combined_Dataset/`` (foregrounds,
   alpha mattes, trimaps, name lists), ``Composition-1k/merged/`` and ``train_merged/`` (the composites), the
   background folders (``train2014/``, ``VOCdevkit/VOC2012/JPEGImages/``) and the dataset's ``manifest.json``
   (:class:`matting_lib.data.layout.DatasetLayout`). The datasets are those the command was given (``--data``) and
   any dataset folder (one holding ``Combined_Dataset/``) above the output;
2. never one of the command's own input files, nor inside one of its input folders (``metrics --gt G``:
   nothing is written into ``G``), ``--force`` or not;
3. never a folder where a file is expected, nor a place that cannot be written (a read-only folder, a file
   where a folder is needed): :func:`matting_lib.files.check_writable`;
4. an existing file is replaced only with ``--force`` (``force=True``).

Messages name the output, what it collides with, and what to do. Rule 1 and 2 raise :class:`ProtectedOutputError`
(a ``ValueError``), rule 3 ``IsADirectoryError`` / ``NotADirectoryError`` / ``PermissionError``, rule 4
``FileExistsError``. :func:`explain_os_error` turns an ``OSError`` met while writing (a full disk, a read-only
file system, a file where a folder should be) into one sentence saying what to do.

Also here, because every command that writes a matte or speaks to a user shares them: :func:`check_alpha_suffix`
(an alpha matte is written losslessly: ``.png``, ``.bmp``, ``.tif``) and :func:`one_line_warnings` (a warning as a
command-line tool prints it). The module imports nothing but the standard library, so a command checks its outputs
before it loads torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["ProtectedOutputError", "check_output", "check_output_folder", "protected_folders", "explain_os_error",
           "LOSSLESS_SUFFIXES", "check_alpha_suffix", "one_line_warnings"]


class ProtectedOutputError(ValueError):
    """The output would land in a dataset's inputs or ground truth, or on an input of the same command."""


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _within(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def dataset_roots_above(path: str | os.PathLike) -> list[Path]:
    """The dataset folders (holding ``Combined_Dataset/``) that ``path`` lies in, nearest first."""
    return [a for a in _resolved(path).parents if (a / "Combined_Dataset").is_dir()]


def protected_folders(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """``(path, what it holds)`` of a dataset's inputs and ground truth, resolved (see the module docstring)."""
    # imported here: this module checks outputs before a command loads numpy or torch
    from matting_lib.data.layout import (
        DatasetLayout,  # here: the module checks outputs before a command loads numpy or torch
    )

    lay = DatasetLayout.for_root(_resolved(root))
    return [(_resolved(p), what) for p, what in (
        (lay.combined_dir, "foregrounds, alpha mattes, trimaps and name lists"),
        (lay.merged_dir, "test composites"), (lay.train_merged_dir, "training composites"),
        (lay.bg_train_dir, "training backgrounds"), (lay.bg_test_dir, "test backgrounds"),
        (lay.root / "manifest.json", "manifest"))]


def _refuse_protected(out: Path, what: str, inputs: Iterable, datasets: Iterable, folder: bool) -> None:
    target = _resolved(out)
    for given in inputs:
        if given is None or str(given) == "":
            continue
        src = _resolved(given)
        if target == src or (out.exists() and Path(given).exists() and os.path.samefile(out, given)):
            raise ProtectedOutputError(f"{what} {out} is the input {given}; inputs are never overwritten, --force "
                                       f"or not: choose another {'folder' if folder else 'file'}")
        if Path(given).is_dir() and _within(target, src):
            raise ProtectedOutputError(f"{what} {out} is inside the input folder {given}; nothing is written into "
                                       f"a command's input folders, --force or not: choose a place outside it")
    roots = {_resolved(r) for r in datasets if r is not None and str(r) != ""}
    roots.update(dataset_roots_above(out))
    for root in sorted(roots):
        for folder_path, holds in protected_folders(root):
            if _within(target, folder_path):
                top = root / folder_path.relative_to(root).parts[0] if folder_path.is_relative_to(root) else folder_path
                where = (f"is {folder_path}, the {holds} of the dataset {root}" if target == folder_path else
                         f"is inside {folder_path}, the {holds} of the dataset {root}")
                raise ProtectedOutputError(f"{what} {out} {where}; nothing is written into a dataset's inputs or "
                                           f"ground truth, --force or not: choose a place outside {top}")


def check_output(path: str | os.PathLike, *, inputs: Iterable = (), datasets: Iterable = (), force: bool = False,
                 what: str = "output", example: str = "out.png", companions: Iterable = ()) -> Path:
    """Refuse, before any work, a file output that breaks the rule of the module docstring; returns ``Path(path)``.

    Args:
        path: the file to be written.
        inputs: the command's input files and folders (None and "" are skipped).
        datasets: dataset roots the command reads (``--data``); those above ``path`` are found anyway.
        force: allow replacing an existing file (never an input, never in a dataset).
        what: how the messages name the output (``"--out"``, ``"output"``, ``"destination"``).
        example: a file name the message suggests when ``path`` is a folder.
        companions: files written beside ``path`` (``<out>.summary.json``, a manifest): checked the same way.
    """
    # imported here: this module checks outputs before a command loads numpy or torch
    from matting_lib.files import (
        check_writable,  # here: the module checks outputs before a command loads numpy or torch
    )

    out = Path(path)
    for target in (out, *map(Path, companions)):
        _refuse_protected(target, what, inputs, datasets, folder=False)
        check_writable(target, what=what, example=example)
    for target in (out, *map(Path, companions)):
        if target.exists() and not force:
            raise FileExistsError(f"{what} {target} exists; pass --force (force=True) to replace it, or choose "
                                  f"another file")
    return out


def check_output_folder(path: str | os.PathLike, *, inputs: Iterable = (), datasets: Iterable = (),
                        what: str = "output folder") -> Path:
    """Refuse, before any work, a folder output: inside a dataset's inputs or an input folder, an input itself,
    a file, or a place that cannot be written (its nearest existing ancestor is read-only). Returns ``Path(path)``.
    Which of its files may be replaced is the command's business (e.g. ``--force`` for predictions)."""
    # imported here: this module checks outputs before a command loads numpy or torch
    from matting_lib.files import (
        writable_ancestor,  # here: the module checks outputs before a command loads numpy or torch
    )

    out = Path(path)
    _refuse_protected(out, what, inputs, datasets, folder=True)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{what} {out} is a file, not a folder; give a folder (it is created if missing)")
    try:
        writable_ancestor(out, f"{what} {out} cannot be written")
    except NotADirectoryError as err:  # a file above a folder still to be made
        raise NotADirectoryError(str(err).replace("cannot be written", "cannot be created", 1)) from None
    return out


#: File suffixes an alpha matte may be written as: lossless formats OpenCV writes for 8-bit grey (TIFF with its
#: default LZW compression). JPEG, WebP and JPEG 2000 would change the values the metrics read.
LOSSLESS_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


def check_alpha_suffix(path: str | os.PathLike) -> Path:
    """``Path(path)`` if its suffix is one of :data:`LOSSLESS_SUFFIXES`; otherwise a ``ValueError`` naming it."""
    path = Path(path)
    if path.suffix.lower() not in LOSSLESS_SUFFIXES:
        lossy = path.suffix.lower() in (".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".jp2", ".avif", ".heic")
        raise ValueError(f"{path}: " + (f"{path.suffix} is a lossy format; an alpha matte must be stored losslessly"
                                        if lossy else f"unsupported suffix {path.suffix or '(none)'!r}")
                         + f"; use {' / '.join(LOSSLESS_SUFFIXES)}, e.g. {path.with_suffix('.png')}")
    return path


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Within the block, every Python warning is printed to stderr as one line, ``<prog>: warning: <message>``, the
    way a command-line tool speaks, instead of Python's ``file:line: Category: message`` with a source line.
    Warnings that are filtered out stay so; each distinct message is shown once."""
    # imported here: this module checks outputs before a command loads numpy or torch
    import sys  # here: the module checks outputs before a command loads numpy or torch
    import warnings  # here: the module checks outputs before a command loads numpy or torch

    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            print(f"{prog}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def explain_os_error(err: OSError, where: str | os.PathLike) -> str:
    """One sentence for an ``OSError`` met while writing under ``where`` (the file it names, else ``where``):
    a full disk (ENOSPC, EDQUOT), a read-only file system or folder (EROFS, EACCES, EPERM), a file where a folder
    should be (ENOTDIR, EEXIST on a folder), or else the error itself with its file."""
    # imported here: this module checks outputs before a command loads numpy or torch
    from matting_lib.files import DiskFullError  # here: the module checks outputs before a command loads numpy or torch

    target = Path(err.filename) if err.filename else Path(where)
    if isinstance(err, DiskFullError):
        return err.strerror or str(err)
    code = err.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        folder = target if target.is_dir() else target.parent
        try:
            free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free on {folder}"
        except OSError:
            free = f"free space on {folder} unknown"
        written = f"could not write {target}" if err.filename else f"a write under {target} failed"
        return (f"the disk is full: {written} ({free}; {type(err).__name__}: [Errno {code}] "
                f"{err.strerror or os.strerror(code)}). Free some space and run again")
    if code == errno.EROFS:
        return (f"cannot write {target}: it is on a read-only file system ({err.strerror}); give a writable "
                f"location (e.g. another --runs-dir)")
    if code in (errno.EACCES, errno.EPERM):
        return (f"cannot write {target}: permission denied; give a folder this user may write to (e.g. another "
                f"--runs-dir) or fix its permissions")
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot create {target}: a file stands where a folder is needed ({err.strerror}); give a folder"
    return f"{type(err).__name__}: {err}"
