"""predict_examples checks `word_positions` like the other inputs: issue 24, 6.

Before: an Example whose word_positions had 2 entries for 5 ids was served
(the graph quietly derived word starts from the ids instead), and in a batch
the short list was padded with -1, so the CRF saw no word where words were.
Now the exported graph refuses a width that is neither the ids' nor 0, and
values below -1 (TF Serving answers that too); the development server also
checks each example before the padding hides it: one entry per id, in every
example or in none, each -1 or a word index.
"""

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving.server import input_checks
from serving.server import saved_model_session
from tests import serving_fixtures

IDS = [2, 5, 6, 7, 3]


def example(word_positions=None, ids=IDS):
  feature = {key: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
             for key, values in (("input_ids", ids), ("input_mask", [1] * len(ids)),
                                 ("segment_ids", [0] * len(ids)))}
  if word_positions is not None:
    feature["word_positions"] = tf.train.Feature(
        int64_list=tf.train.Int64List(value=word_positions))
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def graph():
  """The exported graph alone, as TF Serving runs it (no dev-server checks)."""
  model = saved_model_session.SessionSavedModel(
      serving_fixtures.served_model()["version_dir"])
  yield lambda *examples: model.run(
      "predict_examples", {"examples": np.array(examples, object)})
  model.close()


@pytest.fixture(scope="module")
def manager():
  return serving_fixtures.loaded_manager()


def test_the_graph_refuses_word_positions_of_another_width(graph):
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    graph(example([-1, 0]))
  assert ("word_positions has 2 entries but input_ids has 5 positions; send "
          "one word position per id (-1 where no word starts), or none"
          in error.value.message)


def test_the_graph_refuses_word_positions_out_of_range(graph):
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    graph(example([-1, 0, -3, 1, -1]))
  assert ("word_positions must be -1 (no word starts) or a word index in "
          "[0, 2147483648); found -3 at row 0, position 2 (out-of-range "
          "values in the request: 1)" in error.value.message)
  with pytest.raises(tf.errors.InvalidArgumentError):
    graph(example([-1, 0, 2 ** 32 + 1, 1, -1]))


def test_the_graph_serves_good_word_positions_and_none(graph):
  given = graph(example([-1, 0, 1, 2, -1]), example([-1, 7, 8, 9, -1]))
  derived = graph(example(), example())
  assert given["label_ids"].shape == derived["label_ids"].shape == (2, 5)


@pytest.mark.parametrize("examples,message", [
    ([example([-1, 0, 1, 2, -1]), example([-1, 0])],
     "Input examples row 1: word_positions has 2 entries for 5 input_ids; "
     "send one per id (-1 where no word starts), or leave it out."),
    ([example([-1, 0, 1, 2, -1]), example()],
     "Input examples: word_positions is in rows [0] but not in rows [1]; "
     "send it for every example of a request or for none."),
    ([example([-1, 0, -2, 2, -1])],
     "Input examples row 0: word_positions holds -2 at position 2; each entry "
     "is -1 (no word starts) or a word index in [0, 2147483648)."),
])
def test_the_dev_server_checks_each_example(manager, examples, message):
  """The padded batch hides a short list: [-1, 0] becomes [-1, 0, -1, -1, -1]."""
  loaded = manager.get("ner")
  with pytest.raises(input_checks.ServingError) as error:
    loaded.predict("predict_examples",
                   {"examples": np.array(examples, object)})
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.message == message


def test_the_dev_server_serves_consistent_word_positions(manager):
  outputs = manager.get("ner").predict("predict_examples", {
      "examples": np.array([example([-1, 0, 1, 2, -1]),
                            example([-1, 3, 4, -1], ids=[2, 5, 6, 3])],
                           object)})
  assert outputs["tags"].shape == (2, 5)
