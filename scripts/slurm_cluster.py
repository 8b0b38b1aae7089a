"""Start a Dask scheduler whose workers are SLURM jobs with one GPU each (dask-jobqueue).

Usage on the cluster's login node (adapt queue, account, memory and walltime)::

    python scripts/slurm_cluster.py --jobs 8 --queue gpu --walltime 04:00:00
    # prints the scheduler address; in another shell:
    alstudy batch params/batch/quickstart.slurm.yaml --backend dask --scheduler tcp://HOST:PORT

For PBS use ``--system pbs``. Every worker runs one unit at a time (``processes=1``) with all
cores of its job for torch, and ``device: auto`` makes the unit use the job's GPU.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    """Start the cluster and keep it alive until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=["slurm", "pbs"], default="slurm")
    parser.add_argument("--jobs", type=int, default=4, help="number of GPU worker jobs")
    parser.add_argument("--queue", default=None)
    parser.add_argument("--account", default=None)
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--memory", default="32GB")
    parser.add_argument("--walltime", default="04:00:00")
    args = parser.parse_args()

    from dask_jobqueue import PBSCluster, SLURMCluster

    gpu = ["--gres=gpu:1"] if args.system == "slurm" else ["-l ngpus=1"]
    cls = SLURMCluster if args.system == "slurm" else PBSCluster
    cluster = cls(queue=args.queue, account=args.account, cores=args.cores, processes=1,
                  memory=args.memory, walltime=args.walltime, job_extra_directives=gpu,
                  worker_extra_args=["--nthreads", "1"])
    cluster.scale(jobs=args.jobs)
    print(f"scheduler: {cluster.scheduler_address}", flush=True)
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()


if __name__ == "__main__":
    main()
