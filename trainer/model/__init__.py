"""Model layer (TensorFlow graph code): task heads on top of `BertModel`
(`heads`), the CRF (`crf`), the BiLSTM (`bilstm`), fusable dense/GELU/layer norm
(`fused_ops`) and AdamW with its train op (`optimization`). Imports the base
modules and `trainer.data` only."""
