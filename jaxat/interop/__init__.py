"""Moving jaxat models to and from PyTorch / RobustBench (one module, one job).

  torch_keys.py    which jaxat variable becomes which PyTorch state_dict key, per family
                   (the official repositories' key layouts)
  torch_layout.py  array conversions (HWIO->OIHW kernels, dense transposes, NHWC->NCHW
                   flatten order, BatchNorm statistics) and checked state_dict <-> variables
  torch_source.py  the self-contained PyTorch model definition written next to an export
  model_info.py    RobustBench-style model_info JSON from a run's config and eval reports
  export.py        `export_run(workdir, out_dir)`, behind `python -m jaxat.export`
  torch_import.py  PyTorch checkpoint + architecture name -> jaxat model (jaxat.evaluate)

PyTorch itself is imported only where a `.pt` file is read or written (`pip install
-e ".[torch]"`); the conversions are numpy.
"""
