"""Distillation: a shallower student learns from a finished run (the teacher).

  `options`   the distillation flags' checks (pure Python).
  `layers`    which teacher layers a student keeps; the student's
              bert_config and checkpoint assignment map (pure Python).
  `teacher`   the teacher's per-token label distributions over the training
              windows, computed once and cached (TensorFlow).
  `loss`      gold cross-entropy plus temperature-scaled KL (TensorFlow).
  `run`       the student's training input: the teacher targets file
              (TensorFlow).
  `student_data`  the student's labels in the teacher's order and the
              --distill_unlabelled_file sentences (pure Python).
"""
