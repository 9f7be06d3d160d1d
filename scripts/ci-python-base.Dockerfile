# CI's registry-free Python base image (built by scripts/ci-base-images.sh, FROM the Debian image it makes with
# debootstrap): Debian's Python in a virtual environment on PATH (Debian has no `python` command and refuses
# system-wide pip installs), and the CA certificates of the machine that builds it, so that pip reaches the package
# index through an egress proxy that re-signs TLS. For CI and tests only: the product image (../Dockerfile) never
# trusts a test-only CA.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
