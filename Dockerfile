# The one image all tfpipe components run in: a Python base, this package (non-editable) with the built-in
# `digits` example's data package and, by default, TensorFlow with NVIDIA's CUDA libraries (the GPU build).
#
#   make image                                            # the GPU build, tagged localhost/tfpipe:0.1.0
#   make image IMAGE=REGISTRY/tfpipe:0.1.0 && docker push REGISTRY/tfpipe:0.1.0
#   tfpipe compile --backend vertex --image REGISTRY/tfpipe:0.1.0 -o pipeline.yaml
#
# Build arguments:
#   BASE_IMAGE      any image with Python 3.10-3.12 as `python` (and `python3`) on PATH, and pip.
#   TFPIPE_EXTRAS   the tfpipe extras to install (pyproject.toml): `gpu` adds `tensorflow[and-cuda]`, `examples`
#                   the `digits` example's scikit-learn. A CPU-only image: --build-arg TFPIPE_EXTRAS=examples.
#
# Why a Python base plus `tensorflow[and-cuda]` and not TensorFlow's own GPU image: the TensorFlow version is then
# declared once, in pyproject.toml, and the CUDA/cuDNN libraries are the ones TensorFlow's `and-cuda` extra asks
# for at that version; the CPU build that CI tests (same Dockerfile, another base, no `gpu` extra) differs from the
# GPU build only by those wheels; and the base is an official Python image rebuilt for every Debian update, where
# TensorFlow's images have had release tags published late or not at all. bookworm's Python 3.11 is the one CI's
# registry-free base has (scripts/ci-base-images.sh). The GPU needs only the host's driver (`docker run --gpus all`,
# or a GKE/Vertex GPU node).
#
# The KFP components are lightweight Python components with `base_image` set to this image and
# `install_kfp_package=False`: nothing is pip-installed when a step starts.
#
# Task code (README, "Your own model"): an image derived from this one can refuse code that a run's inputs name:
#   ENV TFPIPE_TASK_PACKAGES=off          # refuse every `task_package` (only the image's own tasks run)
#   ENV TFPIPE_TASK_MODULES=mypkg,tfpipe  # import tasks (and install package modules) from these modules only
# and opt into source distributions as `task_package`, whose build code runs at install:
#   ENV TFPIPE_TASK_PACKAGE_SDISTS=allow
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG TFPIPE_EXTRAS=gpu,examples

# TF_USE_LEGACY_KERAS=1: `tf.keras` is Keras 2 (`tf_keras`), what tfpipe and Orbit-style task code are written for
# (Keras 3 objects are refused with this fix named: tfpipe.controller_core.keras3).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_USE_LEGACY_KERAS=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# TensorFlow's gs:// retries, timeouts and stat cache (read at `import tensorflow`); the reasons for each value
# are in components/common/gcs_retry.py (tfpipe.components.common.gcs_retry), which sets the same defaults for processes started
# without this image (tests/test_containers.py checks that both agree).
ENV GCS_RETRY_CONFIG_INIT_DELAY_TIME_US=1000000 \
    GCS_RETRY_CONFIG_MAX_DELAY_TIME_US=32000000 \
    GCS_RETRY_CONFIG_MAX_RETRIES=10 \
    GCS_REQUEST_CONNECTION_TIMEOUT_SECS=30 \
    GCS_REQUEST_IDLE_TIMEOUT_SECS=30 \
    GCS_METADATA_REQUEST_TIMEOUT_SECS=120 \
    GCS_READ_REQUEST_TIMEOUT_SECS=3600 \
    GCS_WRITE_REQUEST_TIMEOUT_SECS=3600 \
    GCS_STAT_CACHE_MAX_AGE=0

# The dependencies first, from pyproject.toml alone: this layer (TensorFlow, and CUDA for the GPU build) is
# rebuilt only when pyproject.toml or the extras change, not on every edit of the sources.
COPY pyproject.toml scripts/pyproject_requirements.py /tmp/tfpipe-deps/
RUN python -m pip install --upgrade pip \
 && python /tmp/tfpipe-deps/pyproject_requirements.py /tmp/tfpipe-deps/pyproject.toml "${TFPIPE_EXTRAS}" \
      > /tmp/tfpipe-deps/requirements.txt \
 && python -m pip install -r /tmp/tfpipe-deps/requirements.txt \
 && rm -rf /tmp/tfpipe-deps

# Then the package, built from a copy of the sources that is removed afterwards: the image holds the installed
# package, not a checkout (a `tfpipe/` folder in the working directory would shadow the installed package).
COPY pyproject.toml README.md /tmp/tfpipe-src/
COPY tfpipe /tmp/tfpipe-src/tfpipe
COPY controller_core /tmp/tfpipe-src/controller_core
COPY components /tmp/tfpipe-src/components
COPY pipelines /tmp/tfpipe-src/pipelines
COPY component_specs /tmp/tfpipe-src/component_specs
# The working directory is an empty folder that any user may write to (a step may run as a non-root user):
# `python -m` puts the working directory first on sys.path, so nothing in it may shadow an installed module.
RUN python -m pip install "/tmp/tfpipe-src${TFPIPE_EXTRAS:+[${TFPIPE_EXTRAS}]}" \
 && rm -rf /tmp/tfpipe-src \
 && mkdir -m 1777 /workdir \
 && cd /workdir \
 && python -c "import tfpipe.controller_core, tfpipe.components.train.runtime, tfpipe.components.kfp_components"
WORKDIR /workdir

# Entry points: python -m tfpipe.components.train|evaluate|continuous_eval|export --flag=value ...
ENTRYPOINT []
CMD ["python", "-m", "tfpipe.components.train", "--helpfull"]
