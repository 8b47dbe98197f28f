#!/usr/bin/env bash
# Tandem build driver (Linux): ./build.sh image | run | test | bench  — see README.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
dotnet build tools/Build -c Release --nologo -v quiet -clp:ErrorsOnly >/dev/null || dotnet build tools/Build -c Release --nologo -v quiet
exec dotnet tools/Build/bin/Release/net10.0/tandem-build.dll "$@"
