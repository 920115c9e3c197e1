"""One place that names every feature, file, signature and output of the NER model.

The TFRecord writer, the `tf.data` parser, the `model_fn`, the exporter, the
local server and the client all read these names; nothing else spells them.
This module is pure Python (no TensorFlow import) so data code and the client
can use it without pulling TensorFlow in.

Feature layout of one example (a window of one sentence), all int32 ``[seq_len]``:

  ``input_ids``    word-piece ids: ``[CLS] piece ... [SEP]`` then padding 0.
  ``input_mask``   1 on real positions (``[CLS]``, pieces, ``[SEP]``), 0 on padding.
  ``segment_ids``  all 0 (NER has one segment).
  ``label_ids``    label id on the first piece of each word, ``PAD_LABEL_ID`` (-1)
                   on ``[CLS]``, ``[SEP]``, other pieces and padding.

Extra bookkeeping features (int32) used to merge windows back into sentences:

  ``example_index``  ``[]`` index of the sentence in its input file.
  ``window_index``   ``[]`` index of this window within the sentence.
  ``word_positions`` ``[seq_len]`` index of the word whose first piece sits at
                     this position, else -1.
  ``score_mask``     ``[seq_len]`` 1 where this window is the one in which that
                     word has most context (each word is scored in exactly one
                     window), else 0.
"""

# --- Task heads ---------------------------------------------------------------
# Allowed `--head`s (`trainer.model.heads.HeadConfig.kind`).
HEADS = ("softmax", "crf", "bilstm_crf")
# Allowed `--layer_combination`s: how several encoder layers become one vector
# per position (`trainer.model.heads.combine_layers`).
LAYER_COMBINATIONS = ("concat", "scalar_mix", "mean")

# --- Feature keys -----------------------------------------------------------
INPUT_IDS = "input_ids"
INPUT_MASK = "input_mask"
SEGMENT_IDS = "segment_ids"
LABEL_IDS = "label_ids"
EXAMPLE_INDEX = "example_index"
WINDOW_INDEX = "window_index"
WORD_POSITIONS = "word_positions"
SCORE_MASK = "score_mask"
# Cached training with a frozen encoder (trainer.features.encoder_cache): the
# selected encoder layers at each word start of a window, float16 [words,
# layers, H].
ENCODER_FEATURES = "encoder_features"
# Distillation (trainer.distill.teacher): the teacher's log-probabilities of
# every label at each position of a training window, float32 [B, T, L] in a
# batch (stored float16 [T * L] bytes per window in the teacher-targets
# TFRecord; 0 on padding). Only distillation positions (`trainer.distill.
# loss.distill_mask`: word starts inside the scored span) are read.
TEACHER_LOG_PROBS = "teacher_log_probs"

# Features the model needs at serving time, in signature order.
MODEL_INPUT_KEYS = (INPUT_IDS, INPUT_MASK, SEGMENT_IDS)
# Per-position int features stored in TFRecords ([seq_len] each).
SEQUENCE_FEATURE_KEYS = (INPUT_IDS, INPUT_MASK, SEGMENT_IDS, LABEL_IDS,
                         WORD_POSITIONS, SCORE_MASK)
# Per-example scalar int features stored in TFRecords.
SCALAR_FEATURE_KEYS = (EXAMPLE_INDEX, WINDOW_INDEX)

# Label id for positions that carry no label: [CLS], [SEP], non-first
# word-pieces and padding. Masked out of the loss and every metric.
PAD_LABEL_ID = -1
# word_positions value for positions that start no word.
NO_WORD = -1

# Padding values per feature (the first piece id 0 is [PAD] in BERT vocabs).
PADDING_VALUES = {
    INPUT_IDS: 0,
    INPUT_MASK: 0,
    SEGMENT_IDS: 0,
    LABEL_IDS: PAD_LABEL_ID,
    WORD_POSITIONS: NO_WORD,
    SCORE_MASK: 0,
}

# --- Special tokens -----------------------------------------------------------
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, "[MASK]")
CONTINUATION_PREFIX = "##"


def is_special_piece(piece: str) -> bool:
  """True for BERT's bracketed control pieces: "[CLS]", "[PAD]", "[unused7]".

  Example: "[SEP]" -> True, "[UNK]" -> True, "[" -> False, "john" -> False.
  """
  return piece in SPECIAL_TOKENS or (
      len(piece) > 2 and piece.startswith("[") and piece.endswith("]"))


def is_ordinary_piece(piece: str) -> bool:
  """True for a vocab entry that can start a word: not special, not "##...".

  The one definition of an "ordinary" word-piece, used to detect character
  vocabs and to derive word starts from ids.
  Example: "the" -> True, "##s" -> False, "[CLS]" -> False, "的" -> True.
  """
  return not is_special_piece(piece) and not piece.startswith(
      CONTINUATION_PREFIX)

# --- Labels -------------------------------------------------------------------
OUTSIDE_TAG = "O"

# --- Model outputs (Estimator predictions and SavedModel signature outputs) ----
OUTPUT_TAGS = "tags"            # string [batch, seq_len]
OUTPUT_LABEL_IDS = "label_ids"  # int32  [batch, seq_len]
OUTPUT_SCORES = "scores"        # float32 [batch, seq_len], probability of chosen tag
OUTPUT_LENGTHS = "lengths"      # int32 [batch], characters per sentence (predict_text)

# --- Export -------------------------------------------------------------------
DEFAULT_MODEL_NAME = "ner"
SERVING_DEFAULT_SIGNATURE = "serving_default"
PREDICT_EXAMPLES_SIGNATURE = "predict_examples"
PREDICT_TEXT_SIGNATURE = "predict_text"
EXAMPLES_INPUT_KEY = "examples"   # serialized tf.Example strings [batch]
TEXT_INPUT_KEY = "text"           # UTF-8 sentences [batch]
# Every signature an export may hold, in the order they are written.
SIGNATURES = (SERVING_DEFAULT_SIGNATURE, PREDICT_EXAMPLES_SIGNATURE,
              PREDICT_TEXT_SIGNATURE)
# predict_text's tag on characters that are not tokens (whitespace) and on
# padding after each sentence's `lengths`.
NO_TOKEN_TAG = ""

# Tokenizer kinds recorded in ner_config.json ("tokenizer").
CHAR_TOKENIZER = "char"            # one character = one token (Chinese)
WORDPIECE_TOKENIZER = "wordpiece"  # words split into word-pieces

# Default pieces between window starts of long sentences (--doc_stride).
DEFAULT_DOC_STRIDE = 64

# Largest gRPC message the client sends/receives and the server accepts.
MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024

# TensorFlow Serving's default ports.
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501

# --- Files --------------------------------------------------------------------
LABELS_FILENAME = "labels.txt"
VOCAB_FILENAME = "vocab.txt"
BERT_CONFIG_FILENAME = "bert_config.json"
NER_CONFIG_FILENAME = "ner_config.json"
EVAL_RESULTS_FILENAME = "eval_results.txt"
PREDICT_RESULTS_FILENAME = "predict_results.txt"
PREDICTIONS_CONLL_FILENAME = "predictions.conll"
PREDICTIONS_JSONL_FILENAME = "predictions.jsonl"
# Dev-split predictions of the final evaluation (same layout as
# predictions.conll), read by the report.
EVAL_PREDICTIONS_CONLL_FILENAME = "eval_predictions.conll"
# Self-contained HTML evaluation report (trainer.report.writer).
REPORT_FILENAME = "report.html"
# The run's settings and resolved data files, for the report.
RUN_CONFIG_FILENAME = "run_config.json"
# Every record a reader accepted with a change (e.g. a dropped nested span).
DATA_WARNINGS_FILENAME = "data_warnings.txt"
CACHE_DIRNAME = "cache"
# What the run's files were made from (hashes, labels, settings); checked by
# every later phase (trainer.run.manifest) and copied into each export's
# assets.
RUN_MANIFEST_FILENAME = "run_manifest.json"
# In output_dir: a student's bert_config.json (--student_layers), the source
# model's config with its num_hidden_layers.
STUDENT_BERT_CONFIG_FILENAME = "student_bert_config.json"
# One writer per output folder (trainer.run.output_lock).
OUTPUT_LOCK_FILENAME = ".output_dir.lock"
# In CACHE_DIRNAME: what a multi-worker job's chief prepared, which the other
# workers wait for (trainer.run.multi_worker).
CHIEF_INPUTS_FILENAME = "chief_inputs.json"
# Seconds per training epoch (trainer.training.hooks.EpochTimingHook), for
# benchmarks.
TRAIN_TIMING_FILENAME = "train_timing.json"
EXPORT_DIRNAME = "export"
ASSETS_EXTRA_DIRNAME = "assets.extra"
ASSETS_DIRNAME = "assets"
# TF Serving replays these PredictionLog records when it loads a version.
WARMUP_FILENAME = "tf_serving_warmup_requests"
# Best-model exports (highest eval entity F1) and the record of their score.
BEST_EXPORT_DIRNAME = "export_best"
BEST_EXPORT_RECORD_FILENAME = "best_export.json"
BEST_EXPORT_METRIC = "entity_f1"
