"""Tag schemes (IOB1, IOB2/BIO, BIOES/IOBES, BMES) as data; one span extractor.

A tag is ``PREFIX-TYPE`` (``B-PER``) or the outside tag ``O``. Each scheme is a
frozen `TagScheme` listing the prefixes it allows, so adding a scheme means
adding a row to `SCHEMES`, not another branch.

`get_entities` is the only function in the project that turns a tag sequence
into entity spans; readers, metrics and prediction writers all call it so they
agree with each other and with conlleval.

Pure Python: never imports TensorFlow.
"""

import dataclasses
from typing import Iterable, Optional, Sequence

from seqeval.metrics import sequence_labeling

from trainer import schema

# CoNLL convention: only the first '-' separates prefix and type, so types may
# themselves contain '-' ('B-GPE-X' has type 'GPE-X').
TAG_SEPARATOR = "-"


@dataclasses.dataclass(frozen=True)
class TagScheme:
  """One tagging scheme.

  Attributes:
    name: canonical name, e.g. "IOB2".
    prefixes: every prefix a tag may carry in this scheme, outside tag included.
    inside_prefixes: prefixes that continue an entity. They are mapped to "I"
      before span extraction (BMES writes "M-" where BIOES writes "I-").
  """
  name: str
  prefixes: tuple[str, ...]
  inside_prefixes: tuple[str, ...] = ("I",)


IOB1 = TagScheme(name="IOB1", prefixes=("I", "B", "O"))
IOB2 = TagScheme(name="IOB2", prefixes=("B", "I", "O"))
BIOES = TagScheme(name="BIOES", prefixes=("B", "I", "O", "E", "S"))
BMES = TagScheme(name="BMES", prefixes=("B", "M", "E", "S", "O"),
                 inside_prefixes=("M",))

# Aliases point at the same object, so `get_scheme("BIO") is IOB2`.
SCHEMES: dict[str, TagScheme] = {
    "IOB1": IOB1,
    "IOB2": IOB2,
    "BIO": IOB2,
    "BIOES": BIOES,
    "IOBES": BIOES,
    "BMES": BMES,
}

# What a tag may use when the scheme is not known yet (e.g. while reading).
ALL_PREFIXES: tuple[str, ...] = ("B", "I", "M", "E", "S", schema.OUTSIDE_TAG)


def get_scheme(name: str) -> TagScheme:
  """Returns the scheme called `name` (case-insensitive, aliases allowed).

  Raises:
    ValueError: if `name` is not a known scheme; the message lists them.
  """
  scheme = SCHEMES.get(name.upper()) if isinstance(name, str) else None
  if scheme is None:
    raise ValueError(f"Unknown tag scheme {name!r}; allowed: "
                     f"{', '.join(SCHEMES)}.")
  return scheme


def split_tag(tag: str) -> tuple[str, Optional[str]]:
  """Splits a tag into (prefix, type) at the first '-'.

  Example:
    'B-PER'   -> ('B', 'PER')
    'B-GPE-X' -> ('B', 'GPE-X')
    'O'       -> ('O', None)
    'PER'     -> ('PER', None)   (no separator; `validate_tag` rejects it)
  """
  prefix, separator, entity_type = tag.partition(TAG_SEPARATOR)
  if not separator:
    return prefix, None
  return prefix, entity_type


def validate_tag(tag: str, scheme: Optional[TagScheme] = None,
                 source: str = "") -> None:
  """Checks one tag against `scheme` (or against all prefixes when None).

  Raises:
    ValueError: naming `source`, the tag and the allowed prefixes, when the
      prefix is unknown, 'O' carries a type, another prefix has no type, or the
      tag contains whitespace.
  """
  allowed = scheme.prefixes if scheme is not None else ALL_PREFIXES
  scheme_name = scheme.name if scheme is not None else "any scheme"
  prefix, entity_type = split_tag(tag)
  problem = None
  if not tag or any(character.isspace() for character in tag):
    problem = "a tag must be non-empty and contain no whitespace"
  elif prefix not in allowed:
    problem = f"unknown prefix {prefix!r}"
  elif prefix == schema.OUTSIDE_TAG and entity_type is not None:
    problem = f"the outside tag must be exactly {schema.OUTSIDE_TAG!r}"
  elif prefix != schema.OUTSIDE_TAG and not entity_type:
    problem = f"prefix {prefix!r} needs an entity type after '-'"
  if problem is not None:
    where = f"{source}: " if source else ""
    raise ValueError(
        f"{where}invalid tag {tag!r} ({problem}). Tags must be "
        f"{schema.OUTSIDE_TAG!r} or PREFIX-TYPE with PREFIX in "
        f"{', '.join(p for p in allowed if p != schema.OUTSIDE_TAG)} "
        f"({scheme_name}).")


def validate_tags(tags: Sequence[str], scheme: Optional[TagScheme] = None,
                  source: str = "") -> None:
  """Checks every tag of a sequence; see `validate_tag`.

  Raises:
    ValueError: for the first bad tag, naming `source` and its token index.
  """
  for index, tag in enumerate(tags):
    validate_tag(tag, scheme, f"{source} token {index}" if source
                 else f"token {index}")


def _normalize_inside(tags: Iterable[str]) -> list[str]:
  """Maps BMES inside tags to IOB ones so seqeval understands them.

  Example: ['B-LOC', 'M-LOC', 'E-LOC'] -> ['B-LOC', 'I-LOC', 'E-LOC']
  """
  normalized = []
  for tag in tags:
    prefix, entity_type = split_tag(tag)
    if entity_type is not None and prefix in BMES.inside_prefixes:
      tag = "I" + TAG_SEPARATOR + entity_type
    normalized.append(tag)
  return normalized


def normalize_tag_sequences(
    tag_sequences: Iterable[Sequence[str]]) -> list[list[str]]:
  """`_normalize_inside` over many sentences (used by metrics)."""
  return [_normalize_inside(tags) for tags in tag_sequences]


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
  """Guesses the scheme of labelled data.

  Rules, first match wins: 'BMES' if any tag has prefix M; 'BIOES' if any has
  E or S; 'IOB1' if some I- tag starts a chunk (it follows 'O', a tag of
  another type, or the sentence start); else 'IOB2' (also for all-'O' data).

  Example:
    [['B-PER', 'I-PER', 'O']] -> 'IOB2'
    [['I-PER', 'O', 'I-LOC']] -> 'IOB1'
    [['S-PER', 'O']]          -> 'BIOES'
  """
  prefixes_seen = set()
  inside_starts_chunk = False
  for tags in tag_sequences:
    previous_type = None
    for tag in tags:
      prefix, entity_type = split_tag(tag)
      prefixes_seen.add(prefix)
      if prefix == "I" and entity_type != previous_type:
        inside_starts_chunk = True
      previous_type = entity_type
  if "M" in prefixes_seen:
    return BMES.name
  if prefixes_seen & {"E", "S"}:
    return BIOES.name
  if inside_starts_chunk:
    return IOB1.name
  return IOB2.name


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
  """Turns one sentence's tags into entity spans, with conlleval semantics.

  Works for IOB1, IOB2, BIOES and BMES, and for invalid sequences the way
  conlleval reads them (an I- after O or after another type starts a chunk).
  Delegates to seqeval (default mode, conlleval-compatible) after mapping
  'M-' to 'I-'; seqeval's inclusive ends become exclusive.

  Args:
    tags: tags of one sentence.

  Returns:
    (type, start, end_exclusive) per entity, in order.

  Example:
    ['B-PER', 'I-PER', 'O', 'B-LOC'] -> [('PER', 0, 2), ('LOC', 3, 4)]
    ['O', 'I-PER', 'I-PER']          -> [('PER', 1, 3)]
  """
  return [(entity_type, start, end_inclusive + 1)
          for entity_type, start, end_inclusive
          in sequence_labeling.get_entities(_normalize_inside(tags))]
