"""Packaging for the BERT-NER trainer (`pip install -e .[test]`)."""

import setuptools

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
        # tests (tests/browser.py); they skip when either is missing.
        "test": ["pytest>=7", "selenium>=4.11"],
        # bench/vs_pytorch.py's peer (PyTorch + HF transformers); never
        # needed by the trainer.
        "bench": ["torch==2.13.0", "transformers==5.24.0"],
        # --use_tpu with a Cloud TPU name (not a grpc:// address): the
        # TPUClusterResolver looks the name up through the Cloud TPU API.
        "tpu": ["cloud-tpu-client>=0.10"],
    },
    entry_points={
        "console_scripts": [
            "run-ner=run_ner:run_main",
        ],
    },
)
