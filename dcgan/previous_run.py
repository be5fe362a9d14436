"""A run that --overwrite replaces: set aside in the run folder's .previous-run until the new run saves its first
checkpoint, then dropped, or put back if the new run fails first; and what a killed trainer left, cleared."""
from pathlib import Path

from dcgan.errors import UserError
from dcgan.files import remove, remove_partials
from dcgan.weights import MODEL_ROLES, METRICS_FILE, RUN_FILE, SNAPSHOTS, snapshot_steps

PREVIOUS_RUN = ".previous-run"
WHOLE = ".whole"  # in PREVIOUS_RUN once the whole run is in it


def remove_leftovers(folder):
    """Temporary files and folders of a process that was killed while saving."""
    for path in Path(folder, SNAPSHOTS).glob(".tmp-*"):
        remove(path)
    remove_partials(folder)


def _run_entries(folder):
    """What a run wrote in `folder` (dcgan.weights names it), and nothing else a user keeps there."""
    models = (f"{role}.{kind}" for role in MODEL_ROLES for kind in ("weights.h5", "keras"))
    names = {RUN_FILE, METRICS_FILE, SNAPSHOTS, *models}
    return [path for path in Path(folder).iterdir() if path.name in names]


def set_aside_run(folder):
    """Move the run in `folder` into folder/.previous-run, where it stays until `drop_previous_run`
    (the new run has a checkpoint) or `restore_previous_run` (the new run failed before that).

    A .previous-run without its WHOLE mark was interrupted while moving: the rest of that run is still in `folder`,
    and nothing new was written there."""
    previous = Path(folder) / PREVIOUS_RUN
    previous.mkdir()
    for path in _run_entries(folder):
        path.rename(previous / path.name)
    (previous / WHOLE).touch()


def restore_previous_run(folder):
    """Put a run set aside by `set_aside_run` back in place of what the failed new run wrote (if the set-aside
    was whole: else nothing new was written, and only what was moved goes back)."""
    previous = Path(folder) / PREVIOUS_RUN
    if (previous / WHOLE).is_file():
        for path in _run_entries(folder):
            remove(path)
        (previous / WHOLE).unlink()
    for path in previous.iterdir():
        path.rename(Path(folder) / path.name)
    previous.rmdir()


def drop_previous_run(folder):
    remove(Path(folder) / PREVIOUS_RUN)


def settle_previous_run(folder):
    """After a trainer was killed while replacing a run: keep the new run if it saved a checkpoint,
    else put the old one back. Returns what it did, for the user, or None."""
    previous = Path(folder) / PREVIOUS_RUN
    if previous.is_symlink() or (previous.exists() and not previous.is_dir()):
        raise UserError(f"{previous} is not the folder dcgan sets a replaced run aside in; move it out of {folder}")
    if not previous.is_dir():
        return None
    if snapshot_steps(folder) and (previous / WHOLE).is_file():
        drop_previous_run(folder)
        return f"Removed the run that an interrupted --overwrite replaced in {folder}: its new run had a checkpoint"
    if not any(previous.iterdir()):
        previous.rmdir()  # set aside before anything was moved into it: nothing to settle
        return None
    restore_previous_run(folder)
    return (f"Restored the run in {folder} that an interrupted --overwrite was replacing: the new run never saved a "
            "checkpoint")
