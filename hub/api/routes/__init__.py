"""The API's routers, one module per group of endpoints; ``hub.api.app.create_app`` includes them."""
