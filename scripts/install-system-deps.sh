#!/usr/bin/env bash
# System packages videopipe needs beyond PyPI (Debian/Ubuntu). Safe to run again: installs only what is missing.
#   ffmpeg             test fixtures and benchmarks build media with the ffmpeg CLI (videopipe uses PyAV's FFmpeg)
#   tesseract-ocr-eng  English data for on-screen text (the tesserocr wheel bundles the engine, not the data)
#   espeak-ng          speech synthesis for the lecture demo and the speech tests
#   python3-venv       the Makefile builds a virtual environment
#   docker-compose     validates docker-compose.yml in the tests (`docker-compose config`; needs no engine)
#   wrk                the HTTP load generator of benchmarks/search.py
#   fonts-dejavu-core  real fonts (sans, serif, monospace) for the generated slide decks of the tests
set -euo pipefail

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1 || need+=(tesseract-ocr-eng)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
{ docker compose version || command -v docker-compose; } >/dev/null 2>&1 || need+=(docker-compose)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install these with your package manager, then run again: ${need[*]}" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
