"""The MongoDB store on pymongo's async client: used when MONGO_URI is set."""

from server.store.mongo.store import MongoStore, open_mongo_store

__all__ = ["MongoStore", "open_mongo_store"]
