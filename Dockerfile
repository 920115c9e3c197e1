# Training image: GPU TensorFlow 2.15 with this project installed.
#
#   docker build -t bert-ner-train .
#   docker run --gpus all -v "$PWD/output:/workspace/output" \
#       -v "$PWD/data:/workspace/data:ro" bert-ner-train \
#       --data_dir data --output_dir output --do_train --do_eval --do_export
#
# Serving uses the stock tensorflow/serving image instead (docker-compose.yml).
FROM tensorflow/tensorflow:2.15.0-gpu

WORKDIR /workspace
COPY . .
# The base image's tensorflow 2.15.0 satisfies setup.py's tensorflow==2.15.*,
# so pip keeps it (and its CUDA libraries) and adds the rest.
RUN pip install --no-cache-dir -e .

ENTRYPOINT ["python", "run_ner.py"]
CMD ["--helpfull"]
