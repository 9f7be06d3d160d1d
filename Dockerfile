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

# TensorFlow's gs:// retries, timeouts and stat cache (read at `import tensorflow`); the reasons for each value
# are in components/gcs_retry.py (tfpipe.components.gcs_retry), which sets the same defaults for processes started without this image.
ENV GCS_RETRY_CONFIG_INIT_DELAY_TIME_US=1000000 \
    GCS_RETRY_CONFIG_MAX_DELAY_TIME_US=32000000 \
    GCS_RETRY_CONFIG_MAX_RETRIES=10 \
    GCS_REQUEST_CONNECTION_TIMEOUT_SECS=30 \
    GCS_REQUEST_IDLE_TIMEOUT_SECS=30 \
    GCS_METADATA_REQUEST_TIMEOUT_SECS=120 \
    GCS_READ_REQUEST_TIMEOUT_SECS=3600 \
    GCS_WRITE_REQUEST_TIMEOUT_SECS=3600 \
    GCS_STAT_CACHE_MAX_AGE=0

# Build from a copy of the sources, then leave it: a `tfpipe/` folder in the working directory would shadow the
# installed package.
COPY pyproject.toml README.md /tmp/tfpipe-src/
COPY tfpipe /tmp/tfpipe-src/tfpipe
COPY controller_core /tmp/tfpipe-src/controller_core
COPY components /tmp/tfpipe-src/components
COPY pipelines /tmp/tfpipe-src/pipelines
COPY component_specs /tmp/tfpipe-src/component_specs
# Non-editable install: the image holds the package, not a checkout.
RUN python -m pip install --upgrade pip \
 && python -m pip install "/tmp/tfpipe-src[examples]" \
 && rm -rf /tmp/tfpipe-src \
 && python -c "import tfpipe.controller_core, tfpipe.components.train, tfpipe.components.kfp_components"
WORKDIR /

# Entry points: python -m tfpipe.components.train|evaluate|continuous_eval|export --flag=value ...
ENTRYPOINT []
CMD ["python", "-m", "tfpipe.components.train", "--helpfull"]
