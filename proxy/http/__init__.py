"""HTTP: routes, middleware, responses, SSE and Socket.IO. Translates requests to the service and
results back.
"""
