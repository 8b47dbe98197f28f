# Tandem build driver (Windows): .\build.ps1 image | run | test | bench  — see README.md.
# A thin wrapper over the same C# driver that build.sh runs.
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
dotnet build tools/Build -c Release --nologo -v quiet
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
dotnet tools/Build/bin/Release/net10.0/tandem-build.dll @args
exit $LASTEXITCODE
