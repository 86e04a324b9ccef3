"""The release tool's command line (``python -m firmware_tools``) over the format library.

The library (semver, chips, image, release, signing, storage, s3, roots, workflow, publish,
checks) never imports this package; the control plane uses the library alone.
"""
