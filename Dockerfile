# The one image all four tfpipe components run in: TensorFlow's GPU image of the pinned version,
# plus this package (with the built-in `digits` example's data package).
#
#   docker build -t REGISTRY/tfpipe:0.1.0 .
#   tfpipe compile --backend vertex --image REGISTRY/tfpipe:0.1.0 -o pipeline.yaml
#
# The KFP components are lightweight Python components with `base_image` set to this image and
# `install_kfp_package=False`: nothing is pip-installed when a step starts.
FROM tensorflow/tensorflow:2.21.0-gpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PIP_NO_CACHE_DIR=1

WORKDIR /opt/tfpipe
COPY pyproject.toml README.md ./
COPY controller_core ./controller_core
COPY components ./components
COPY pipelines ./pipelines
# Non-editable install: the image holds the package, not a checkout.
RUN python -m pip install --upgrade pip \
 && python -m pip install ".[examples]" \
 && python -c "import controller_core, components.train, components.kfp_components"

# Entry points: python -m components.train|evaluate|continuous_eval|export --flag=value ...
ENTRYPOINT []
CMD ["python", "-m", "components.train", "--helpfull"]
