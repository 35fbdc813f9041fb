"""One process of tests/test_parallel.py's multi-host runs (with JAX_NUM_PROCESSES unset: the 1-process
reference). Runs experiments into ROOT/<name> over a mesh of every process's devices, as `ddss` does:

  python multihost_worker.py ROOT ref_stats ddss evolution

and prints one JSON line: the process, the device count, and which rows of an 8-row batch (and of a
training batch) this process read itself."""
import json
import os
import sys

from ddss import parallel

distributed = parallel.initialize()  # from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ddss import experiments  # noqa: E402
from ddss.configs import gmm_ddss_test, gmm_evolution_test, ref_stats_digits  # noqa: E402
from ddss.experiments import train  # noqa: E402


def configs():
    ref = ref_stats_digits.get_config()
    ref.batch_size = 500  # 1797 = 3 × 500 + 297: the last, short batch is split over the hosts too
    return {"ref_stats": ref, "ddss": gmm_ddss_test.get_config(), "evolution": gmm_evolution_test.get_config()}


def main(root, stages):
    read = []
    with jax.set_mesh(parallel.make_mesh()):
        batch = parallel.put_rows(lambda a, b: read.append((a, b)) or np.arange(a, b), 8)[0]
        data = train.DigitsData("all", 16, seed=0)
        same = bool(np.array_equal(parallel.to_host(data.global_batch(3)), data.batch(3)))
        gathered = parallel.to_host(batch).tolist()
    for name in stages:
        experiments.run(configs()[name], os.path.join(root, name))
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count(),
                      "distributed": distributed, "read": read, "gathered": gathered,
                      "training_batch_is_the_global_batch": same}))
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
