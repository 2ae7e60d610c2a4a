"""mnist_vae/cli.py: the frameworks' start-up chatter is held back and everything else passes through."""
import os

import pytest

pytestmark = pytest.mark.backend_independent


def test_start_up_chatter_is_held_back_and_everything_else_passes(capfd):
    from mnist_vae.cli import quiet_start_up

    with quiet_start_up():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1795923489.946333    7493 cudart_stub.cc:31] Could not find cuda drivers\n"
                    b"E0000 00:00:1795923494.714275    7493 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
                    b"E0000 00:00:1795923494.714275    7493 file_io.cc:12] could not open /data/x: Permission denied\n"
                    b"E0000 00:00:1795923494.714275    7493 cuda_driver.cc:12] "
                    b"CUDA_ERROR_OUT_OF_MEMORY: out of memory\n"
                    b"a real problem\n")
    err = capfd.readouterr().err
    assert err == ("E0000 00:00:1795923494.714275    7493 file_io.cc:12] could not open /data/x: Permission denied\n"
                   "E0000 00:00:1795923494.714275    7493 cuda_driver.cc:12] CUDA_ERROR_OUT_OF_MEMORY: out of memory\n"
                   "a real problem\n")
