"""Every `docs/<page>.md#<anchor>` cited in the code or the README exists, and nothing cites the design
notes that live outside the repository (their content is in docs/)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCANNED_FOLDERS = ("jaxat", "configs", "benchmarks", "tests")
SCANNED_SUFFIXES = (".py", ".md", ".json")
THIS_FILE = Path(__file__).resolve()

DOCS_REFERENCE = re.compile(r"docs/([A-Za-z0-9_]+\.md)(?:#([\w-]+))?")
# Links between the pages: [text](page.md#anchor) or [text](#anchor).
MARKDOWN_LINK = re.compile(r"\]\(([A-Za-z0-9_]+\.md)?(?:#([\w-]+))?\)")
# The internal notes were named after these files; outside docs/ they may not be cited.
EXTERNAL_NOTE = re.compile(r"(?<![\w/])(uiat|methods|autoattack|architecture)\.md\b")
EXTERNAL_PATH = re.compile(r"specs/|shared/specs")
# Section numbers (§) referred to those notes.
SECTION_SIGN = re.compile(r"§")


def github_anchor(heading: str) -> str:
  """GitHub's heading slug: lower case, punctuation dropped, spaces turned into hyphens."""
  text = re.sub(r"[`*_]{2,}|`", "", heading.strip().lower())
  return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors_of(page: Path) -> set[str]:
  """The anchors of every heading outside fenced code, with GitHub's -1, -2 suffixes for
  repeated headings."""
  anchors, seen, in_fence = set(), {}, False
  for line in page.read_text(encoding="utf-8").splitlines():
    if line.lstrip().startswith("```"):
      in_fence = not in_fence
      continue
    match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
    if in_fence or not match:
      continue
    slug = github_anchor(match.group(1))
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    anchors.add(slug if count == 0 else f"{slug}-{count}")
  return anchors


def scanned_files():
  yield ROOT / "README.md"
  for folder in SCANNED_FOLDERS:
    for path in sorted((ROOT / folder).rglob("*")):
      if path.suffix in SCANNED_SUFFIXES and path.is_file() and path.resolve() != THIS_FILE:
        yield path


def test_github_anchor_matches_githubs_slugs():
  assert github_anchor("Inverse adversarial loss (Eq. 4)") == "inverse-adversarial-loss-eq-4"
  assert github_anchor("One-off UIAT (Eq. 9-10)") == "one-off-uiat-eq-9-10"
  assert github_anchor("weight_perturbation") == "weight_perturbation"
  assert github_anchor("`prepare`") == "prepare"


def test_every_docs_reference_in_the_code_names_an_existing_page_and_heading():
  cited, missing = 0, []
  for path in scanned_files():
    text = path.read_text(encoding="utf-8")
    for match in DOCS_REFERENCE.finditer(text):
      page, anchor = DOCS / match.group(1), match.group(2)
      cited += 1
      where = f"{path.relative_to(ROOT)}: {match.group(0)}"
      if not page.exists():
        missing.append(f"{where} (no page {page.name})")
      elif anchor is not None and anchor not in anchors_of(page):
        missing.append(f"{where} (no heading with anchor #{anchor})")
  assert cited > 40, "the code should point into docs/ where it used to cite the notes"
  assert not missing, "\n".join(missing)


def test_links_between_the_docs_pages_resolve():
  missing = []
  for page in sorted(DOCS.glob("*.md")):
    for match in MARKDOWN_LINK.finditer(page.read_text(encoding="utf-8")):
      target = DOCS / match.group(1) if match.group(1) else page
      anchor = match.group(2)
      if not target.exists():
        missing.append(f"{page.name}: {match.group(0)} (no page)")
      elif anchor is not None and anchor not in anchors_of(target):
        missing.append(f"{page.name}: {match.group(0)} (no heading)")
  assert not missing, "\n".join(missing)


@pytest.mark.parametrize("pattern", [EXTERNAL_NOTE, EXTERNAL_PATH, SECTION_SIGN],
                         ids=["note_name", "path", "section_sign"])
def test_no_file_cites_the_notes_outside_the_repository(pattern):
  offending = []
  for path in scanned_files():
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
      if pattern.search(line):
        offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
  assert not offending, "cite docs/<page>.md#<anchor> instead:\n" + "\n".join(offending)
