"""Features layer: sentences to BERT inputs. Word-piece glue
(`tokenization`), sentences to windows and back (`windows`, pure Python),
document context (`context`), the TFRecord feature cache and `tf.data` input
functions (`input_pipeline`), and the frozen-encoder feature cache
(`encoder_cache`: store and build). Imports base, data and model."""
