"""Kiosk mode: `covid-edge serve` (upload page, prediction page, JSON API, live kiosk page) and
`covid-edge kiosk` (camera -> classifier -> terminal and live page).

The web server needs the `serve` extra (FastAPI, uvicorn, python-multipart, Jinja2); the kiosk
loop needs only the runtime install. Neither imports TensorFlow.
"""
