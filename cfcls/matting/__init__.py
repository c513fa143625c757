"""The matting mathematics: no flax, no tensorflow, nothing else of cfcls.

  laplacian        window statistics and the matrix-free matting Laplacian L @ x
  window_weights   the per-window weights in float64 or float32
  constraints      a scribble map as the constraints D, S of the matting system
  solver           solve_alpha: every class's closed-form matte of an image
  multifrontal     the direct solver: nested dissection, dense fronts
  grid_ordering    the nested-dissection order of the pixel grid
  direct_kernels   the multifrontal loops compiled with numba (optional)
  stencil_kernels  the host window weights and stencil matvec, compiled
  multigrid        the preconditioned CG for images too big to factorise
  guided_filter    the guided filter (a local edge-aware smoother)
  validation       argument checks with messages that name the argument
"""
