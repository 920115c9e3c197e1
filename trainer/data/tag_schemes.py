"""Tag schemes (IOB1, IOB2/BIO, BIOES/IOBES, BMES) as data; one span extractor.

A tag is ``PREFIX-TYPE`` (``B-PER``) or the outside tag ``O``. Each scheme is a
frozen `TagScheme` listing the prefixes it allows, so adding a scheme means
adding a row to `SCHEMES`, not another branch.

`get_entities` is the only function in the project that turns a tag sequence
into entity spans; readers, metrics and prediction writers all call it so they
agree with each other and with conlleval. `allowed_transitions` turns each
scheme's transition rules into the boolean tables the CRF decoder enforces.

Pure Python: never imports TensorFlow.
"""

import dataclasses
from typing import Iterable, NamedTuple, Optional, Sequence

from seqeval.metrics import sequence_labeling

from trainer import schema

# CoNLL convention: only the first '-' separates prefix and type, so types may
# themselves contain '-' ('B-GPE-X' has type 'GPE-X').
TAG_SEPARATOR = "-"


@dataclasses.dataclass(frozen=True)
class TagScheme:
  """One tagging scheme: its prefixes and which tag may follow which.

  Attributes:
    name: canonical name, e.g. "IOB2".
    prefixes: every prefix a tag may carry in this scheme, outside tag included.
    inside_prefixes: prefixes that continue an entity. They are mapped to "I"
      before span extraction (BMES writes "M-" where BIOES writes "I-").
    continuing_prefixes: prefixes that may only follow a tag in
      `open_prefixes` of the same type, so they never start a sentence
      (IOB2: "I"; IOB1: "B", which only separates two adjacent chunks).
    open_prefixes: prefixes after which an entity of their type may go on.
    explicit_end: True when an entity must be closed by its own tag (BIOES
      "E-"/"S-"): a tag in `open_prefixes` must then be followed by a tag in
      `continuing_prefixes` of the same type, and cannot end a sentence.
  """
  name: str
  prefixes: tuple[str, ...]
  inside_prefixes: tuple[str, ...] = ("I",)
  continuing_prefixes: tuple[str, ...] = ("I",)
  open_prefixes: tuple[str, ...] = ("B", "I")
  explicit_end: bool = False


# IOB1: I-X starts chunks too; B-X only separates two adjacent X chunks.
IOB1 = TagScheme(name="IOB1", prefixes=("I", "B", "O"),
                 continuing_prefixes=("B",))
# IOB2: I-X continues B-X/I-X; B and O may follow anything.
IOB2 = TagScheme(name="IOB2", prefixes=("B", "I", "O"))
# BIOES: B-X/I-X must be followed by I-X/E-X; E and S close the entity.
BIOES = TagScheme(name="BIOES", prefixes=("B", "I", "O", "E", "S"),
                  continuing_prefixes=("I", "E"), explicit_end=True)
# BMES: as BIOES with M for I.
BMES = TagScheme(name="BMES", prefixes=("B", "M", "E", "S", "O"),
                 inside_prefixes=("M",), continuing_prefixes=("M", "E"),
                 open_prefixes=("B", "M"), explicit_end=True)

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


def _scheme_from_prefixes(prefixes: set[str],
                          inside_starts_chunk: bool = False) -> TagScheme:
  """The scheme rule shared by `detect_scheme` and `scheme_of_labels`."""
  if "M" in prefixes:
    return BMES
  if prefixes & {"E", "S"}:
    return BIOES
  if inside_starts_chunk:
    return IOB1
  return IOB2


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
  return _scheme_from_prefixes(prefixes_seen, inside_starts_chunk).name


def scheme_of_labels(label_names: Sequence[str],
                     scheme: Optional[str] = None) -> TagScheme:
  """The scheme of a label list: `scheme` if given, else guessed from prefixes.

  A label list has no order to read, so IOB1 cannot be told from IOB2: any
  'M-' -> BMES, any 'E-'/'S-' -> BIOES, otherwise IOB2 (pass scheme="IOB1"
  for IOB1 data).

  Example:
    ['O', 'B-PER', 'I-PER']          -> IOB2
    ['O', 'B-PER', 'E-PER', 'S-PER'] -> BIOES
    ['O', 'I-PER', 'B-PER'], "IOB1"  -> IOB1

  Raises:
    ValueError: for an unknown `scheme` name.
  """
  if scheme is not None:
    return get_scheme(scheme)
  return _scheme_from_prefixes({split_tag(label)[0] for label in label_names})


class Transitions(NamedTuple):
  """Which label sequences a scheme allows, for a label list of length L.

  Attributes:
    allowed: [L][L] bool, allowed[i][j]: label j may follow label i.
    start: [L] bool, a sentence may start with label j.
    end: [L] bool, a sentence may end with label j.
  """
  allowed: list[list[bool]]
  start: list[bool]
  end: list[bool]


def allowed_transitions(label_names: Sequence[str],
                        scheme: Optional[str] = None) -> Transitions:
  """The scheme's transition rules as tables over `label_names`.

  The scheme comes from `scheme_of_labels`. With X != Y entity types:

  Forbidden, IOB2/BIO: O -> I-X; B-X -> I-Y; I-X -> I-Y; starting with I-X.
  Forbidden, BIOES (IOBES): I-X or E-X after anything but B-X / I-X; B-X or
    I-X followed by anything but I-X / E-X; starting with I-X or E-X; ending
    with B-X or I-X.
  Forbidden, BMES: as BIOES with M in place of I.
  Forbidden, IOB1: B-X after anything but B-X / I-X; starting with B-X.
  Everything else is allowed.

  Example (IOB2; rows = previous label, columns = next; 1 = allowed)::

                 O  B-LOC B-PER I-LOC I-PER
      O          1    1     1     0     0
      B-LOC      1    1     1     1     0
      I-LOC      1    1     1     1     0
      start      1    1     1     0     0
      end        1    1     1     1     1

  Args:
    label_names: label strings in id order, 'O' or 'PREFIX-TYPE'.
    scheme: optional scheme name (any name `get_scheme` accepts).

  Returns:
    `Transitions` of plain Python bool lists.

  Raises:
    ValueError: for an unknown scheme, or a label not valid in the scheme
      (naming "label <id>").
  """
  tag_scheme = scheme_of_labels(label_names, scheme)
  for index, label in enumerate(label_names):
    validate_tag(label, tag_scheme, f"label {index}")
  parts = [split_tag(label) for label in label_names]

  def may_follow(before: tuple[str, Optional[str]],
                 after: tuple[str, Optional[str]]) -> bool:
    opens = before[0] in tag_scheme.open_prefixes
    if after[0] in tag_scheme.continuing_prefixes:
      return opens and before[1] == after[1]
    return not (tag_scheme.explicit_end and opens)

  return Transitions(
      allowed=[[may_follow(before, after) for after in parts]
               for before in parts],
      start=[prefix not in tag_scheme.continuing_prefixes
             for prefix, _ in parts],
      end=[not (tag_scheme.explicit_end
                and prefix in tag_scheme.open_prefixes)
           for prefix, _ in parts])


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
