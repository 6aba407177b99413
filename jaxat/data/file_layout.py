"""Where a dataset's original files are expected relative to a user-given data_dir."""

from __future__ import annotations

import dataclasses
import os
import pathlib


@dataclasses.dataclass(frozen=True)
class FileLayout:
  """The files a dataset needs and the folder its original archive extracts to.

  A data_dir may be the folder the archive was extracted into (the files then sit
  in `data_dir/archive_folder`) or the extracted folder itself.

  Attributes:
    required_files: names of the files that must all be present in one folder.
    archive_folder: name of the folder the original archive extracts to, or None
      when the files are distributed loose (data_dir itself holds them).
  """

  required_files: tuple[str, ...]
  archive_folder: str | None = None

  def candidate_folders(self, data_dir: str) -> tuple[pathlib.Path, ...]:
    """Folders searched for the files, in order; empty when data_dir is unset."""
    if not data_dir:
      return ()
    root = pathlib.Path(os.path.expanduser(data_dir))
    if self.archive_folder is None:
      return (root,)
    return (root / self.archive_folder, root)

  def find_folder(self, data_dir: str) -> pathlib.Path | None:
    """The first candidate folder holding every required file, else None."""
    for folder in self.candidate_folders(data_dir):
      if all((folder / file_name).is_file() for file_name in self.required_files):
        return folder
    return None

  def describe_search(self, data_dir: str) -> str:
    """One sentence naming the files and every folder they were looked for in."""
    folders = self.candidate_folders(data_dir)
    if not folders:
      return (
          f"the original files ({', '.join(self.required_files)}) were not "
          "looked for because data_dir is unset"
      )
    return (
        f"looked for {', '.join(self.required_files)} in: "
        + ", ".join(str(folder) for folder in folders)
    )
