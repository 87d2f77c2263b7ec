from setuptools import find_packages, setup

setup(
    name="recognize_digits",
    version="0.1.0",
    description="Recognise handwritten digits (MNIST) with PaddlePaddle 3: the classic tutorial as a package",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["recognize_digits", "recognize_digits.*"]),
    package_data={"recognize_digits": ["sample/*.gz", "sample/README.md", "static/*.html"]},
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
        # the notebook's ONNX section exports and runs the models: the [export] tools
        "notebook": ["jupyterlab", "ipykernel", "paddle2onnx>=2.0", "onnxruntime"],
        "test": ["pytest", "nbclient", "nbformat", "ipykernel", "playwright"],
        # recognize-digits export: paddle2onnx converts, ONNX Runtime checks the result
        # against Paddle before the file is written, so both belong to exporting
        "export": ["paddle2onnx>=2.0", "onnxruntime"],
        # running an exported model (predict/serve --onnx, examples/onnx_predict.py) only
        "onnx": ["onnxruntime"],
        # benchmarks/handwriting.py's real-handwriting source (UCI digits)
        "benchmarks": ["scikit-learn"],
    },
    entry_points={"console_scripts": ["recognize-digits=recognize_digits.cli:main"]},
)
