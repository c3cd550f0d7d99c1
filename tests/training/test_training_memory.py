"""The training CLI keeps freed memory in the process (`training.train.keep_freed_memory`): with glibc's defaults a
step that allocates and frees a large block faults in and zeroes every page of it again, step after step."""

import platform
import subprocess
import sys

import pytest
from conftest import ROOT

BLOCK_MB = 50  # above glibc's largest default mmap threshold (32 MB): always mmapped, then unmapped when freed

MEASURE = f"""
import resource, torch
from training.train import keep_freed_memory

def faults_per_step():
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        block = torch.empty({BLOCK_MB} * 2**20 // 4)
        block.fill_(1.0)
        del block
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 10

before = faults_per_step()
kept = keep_freed_memory()
faults_per_step()  # the first steps after the switch fault the kept pages in once
print(kept, before, faults_per_step())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's; other C libraries are left alone")
def test_freed_blocks_stay_in_the_process_so_a_step_does_not_fault_its_pages_in_again():
    result = subprocess.run([sys.executable, "-c", MEASURE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    kept, before, after = result.stdout.split()
    pages = BLOCK_MB * 2**20 / 4096
    assert kept == "True"
    assert float(before) > 0.9 * pages  # glibc's default: every page of the block faulted in again, every step
    assert float(after) < 0.05 * pages
