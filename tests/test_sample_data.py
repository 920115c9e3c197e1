"""Checks of the embedded sample dataset (pure Python, no TensorFlow)."""

import functools
import importlib.util
import os
import subprocess
import sys
import unittest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATOR_PATH = os.path.join(REPO_ROOT, "tools", "make_sample_data.py")
DATA_DIR = os.path.join(REPO_ROOT, "trainer", "data", "sample_data")

TAGS = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}
EXPECTED_SENTENCES = {"train": 400, "dev": 80, "test": 80}
EXPECTED_PREDICT_LINES = 20


@functools.lru_cache(maxsize=None)
def _load_generator():
    spec = importlib.util.spec_from_file_location("make_sample_data", GENERATOR_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(name):
    with open(os.path.join(DATA_DIR, name), encoding="utf-8", newline="") as f:
        return f.read()


def _read_conll(name):
    """List of sentences, each a list of (char, tag); asserts the line format."""
    text = _read(name)
    assert text.endswith("\n") and not text.endswith("\n\n"), name
    sentences = []
    for block in text[:-1].split("\n\n"):
        tokens = []
        for line in block.split("\n"):
            parts = line.split(" ")
            assert len(parts) == 2, f"{name}: bad line {line!r}"
            char, tag = parts
            assert len(char) == 1 and not char.isspace(), f"{name}: bad token {line!r}"
            assert tag in TAGS, f"{name}: bad tag {line!r}"
            tokens.append((char, tag))
        sentences.append(tokens)
    return sentences


def _entities(tokens):
    found, current = [], None
    for char, tag in tokens + [("", "O")]:
        if current and tag != "I-" + current[0]:
            found.append((current[0], "".join(current[1])))
            current = None
        if tag.startswith("B-"):
            current = (tag[2:], [char])
        elif tag.startswith("I-"):
            current[1].append(char)
    return found


def _allowed_char(ch):
    # The generator's own rule (GB2312 hanzi, ASCII digits, its punctuation).
    return _load_generator()._is_allowed_char(ch)


class SampleDataTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.splits = {name: _read_conll(f"{name}.txt") for name in EXPECTED_SENTENCES}

    def test_files_match_generator(self):
        generated = _load_generator().generate()
        self.assertEqual(sorted(generated),
                         ["dev.txt", "predict.txt", "test.txt", "train.txt"])
        for name, content in generated.items():
            self.assertEqual(_read(name), content, f"{name} differs from the generator")

    def test_generator_check_mode(self):
        result = subprocess.run([sys.executable, GENERATOR_PATH, "--check"],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_generator_is_deterministic(self):
        generator = _load_generator()
        self.assertEqual(generator.generate(), generator.generate())

    def test_readme_quotes_current_counts(self):
        readme = _read("README.md")
        self.assertIn(_load_generator().stats_table(), readme)

    def test_sentence_counts(self):
        for name, expected in EXPECTED_SENTENCES.items():
            self.assertEqual(len(self.splits[name]), expected, name)
        lines = _read("predict.txt").split("\n")
        self.assertEqual(lines[-1], "")
        self.assertEqual(len(lines) - 1, EXPECTED_PREDICT_LINES)

    def test_iob2_is_well_formed(self):
        for name, sentences in self.splits.items():
            for i, tokens in enumerate(sentences):
                previous = "O"
                for char, tag in tokens:
                    if tag.startswith("I-"):
                        self.assertIn(previous, ("B-" + tag[2:], tag),
                                      f"{name} sentence {i}: {tag} after {previous}")
                    previous = tag

    def test_characters_are_vocab_friendly(self):
        texts = ["".join(c for c, _ in tokens)
                 for sentences in self.splits.values() for tokens in sentences]
        texts += _read("predict.txt").splitlines()
        for text in texts:
            self.assertTrue(text)
            bad = sorted({c for c in text if not _allowed_char(c)})
            self.assertEqual(bad, [], text)

    def test_no_duplicate_sentences(self):
        texts = ["".join(c for c, _ in tokens)
                 for sentences in self.splits.values() for tokens in sentences]
        texts += _read("predict.txt").splitlines()
        self.assertEqual(len(texts), len(set(texts)))

    def test_every_split_has_every_type(self):
        for name, sentences in self.splits.items():
            types = {etype for tokens in sentences for etype, _ in _entities(tokens)}
            self.assertEqual(types, {"PER", "LOC", "ORG"}, name)
            # Some sentences carry no entity at all.
            self.assertTrue(any(all(t == "O" for _, t in tokens) for tokens in sentences),
                            name)

    def test_dev_and_test_have_unseen_entities(self):
        train = {e for tokens in self.splits["train"] for e in _entities(tokens)}
        for name in ("dev", "test"):
            ents = {e for tokens in self.splits[name] for e in _entities(tokens)}
            unseen = ents - train
            self.assertGreaterEqual(len(unseen), 5, name)
            # ... but most of the entity strings were seen (learnable).
            self.assertGreater(len(ents & train), len(unseen), name)
            self.assertEqual({t for t, _ in unseen}, {"PER", "LOC", "ORG"}, name)

    def test_total_size(self):
        total = sum(os.path.getsize(os.path.join(DATA_DIR, n))
                    for n in ("train.txt", "dev.txt", "test.txt", "predict.txt"))
        self.assertLess(total, 300 * 1024)

    def test_sample_data_dir(self):
        from trainer.data.sample_data import sample_data_dir
        self.assertEqual(os.path.realpath(sample_data_dir()), os.path.realpath(DATA_DIR))
        self.assertTrue(os.path.isfile(os.path.join(sample_data_dir(), "train.txt")))


if __name__ == "__main__":
    unittest.main()
