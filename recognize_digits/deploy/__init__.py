"""Taking the model elsewhere: exported to ONNX and run by ONNX Runtime (:mod:`.export`), and a
local web page to draw digits on (:mod:`.serve`, with ``static/draw.html``)."""
