"""What a saved model computes on its way to the answer, for the figures of what the
network learned (its kernels, its feature maps, softmax regression's templates)."""

from pathlib import Path

import numpy as np
import paddle

from ..engine import MODEL_PREFIX, graph_mode


def look_inside(model_dir, images):
    """What a saved model computes on its way to the answer, for ``images`` (float32
    ``[N, 1, 28, 28]`` in [-1, 1]): ``(values, parameters)``.

    ``values`` maps each operation of the program, in the order it runs, to its output:
    named by the operation and numbered when it comes again (``conv2d``, ``pool2d``,
    ``add``, ``relu``, ``batch_norm``, ``conv2d_2``, ..., ``softmax``). ``parameters``
    maps each parameter's name to its values (the first convolution's filters are
    ``conv2d_0.w_0``). An inner value is fetched exactly as training fetches the cost:
    it is one more value in ``fetch_list``.
    """
    prefix = Path(model_dir) / MODEL_PREFIX
    with graph_mode("static"):
        exe, scope = paddle.static.Executor(paddle.CPUPlace()), paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            program, feeds, _ = paddle.static.load_inference_model(str(prefix), exe)
            block = program.global_block()
            for op in [op for op in block.ops if op.name() == "pd_op.fetch"]:
                block.remove_op(op)  # the saved answer's own fetch: ours replace it
            names, values, parameters, seen = [], [], {}, {}
            for op in block.ops:
                kind = op.name().split(".")[-1].rstrip("_")
                if kind == "parameter":
                    name = op.attrs()["parameter_name"]
                    parameters[name] = np.array(scope.find_var(name).get_tensor())
                elif kind not in ("data", "full", "full_int_array") and op.num_results():
                    seen[kind] = seen.get(kind, 0) + 1
                    names.append(kind if seen[kind] == 1 else f"{kind}_{seen[kind]}")
                    values.append(op.result(0))
            arrays = exe.run(program, feed={feeds[0]: np.asarray(images, np.float32)},
                             fetch_list=values)
    return dict(zip(names, arrays)), parameters
