from setuptools import find_packages, setup

# recognize-digits export: paddle2onnx converts, with Polygraphy folding constants through
# onnx-graphsurgeon (which it would otherwise try to install while converting), and ONNX
# Runtime checks the result against Paddle before the file is written
EXPORT = ["paddle2onnx>=2.0", "onnx-graphsurgeon", "onnxruntime"]
# real handwriting from other writers (scikit-learn's copy of the UCI digits): the
# fine-tuning notebook's writer and benchmarks/handwriting.py's source
HANDWRITING = ["scikit-learn"]

setup(
    name="recognize_digits",
    version="0.1.0",
    description="Recognise handwritten digits (MNIST) with PaddlePaddle 3: the classic tutorial as a package",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["recognize_digits", "recognize_digits.*"]),
    package_data={"recognize_digits": ["sample/*.gz", "sample/README.md", "deploy/static/*.html"]},
    # No Paddle here: pip would install the CPU build over a GPU build (both are the package
    # 'paddle'). On the CPU, install with the [cpu] extra; beside paddlepaddle-gpu, without.
    install_requires=[
        "numpy",
        "scipy",
        "Pillow>=9.1",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "cpu": ["paddlepaddle>=3.0.0"],
        "export": EXPORT,
        # running an exported model (predict/serve --onnx, examples/onnx_predict.py) only
        "onnx": ["onnxruntime"],
        # the notebooks: Jupyter, their ONNX section and real handwriting to fine-tune on
        "notebook": ["jupyterlab", "ipykernel", *EXPORT, *HANDWRITING],
        # every test runs: what the tests use is here, so that nothing in the suite skips for
        # want of a package (the notebooks run in a kernel; the draw page in Chromium)
        "test": ["pytest", "nbclient", "nbformat", "ipykernel", "playwright", *EXPORT,
                 *HANDWRITING],
        "benchmarks": HANDWRITING,
    },
    entry_points={"console_scripts": ["recognize-digits=recognize_digits.cli:main"]},
)
