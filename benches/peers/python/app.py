"""A hand-written Authvia webhook relay in Python, a peer bp-relay is benchmarked against.

FastAPI on uvicorn (2 workers, uvloop + httptools) and confluent-kafka (librdkafka): acks=all,
idempotent, lz4, linger 5 ms, murmur2_random (Java-compatible) partitioner. It answers
200 {"topic","partition","offset"} only after the delivery report: a poll thread serves
librdkafka's callbacks and resolves the request's asyncio future with call_soon_threadsafe.

    SIGNING_SECRET=... KAFKA_BROKERS=127.0.0.1:9092 TOPIC=authvia.business-processes \
      uvicorn app:app --host 127.0.0.1 --port 8080 --workers 2 --no-access-log
"""

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import threading
import time

from confluent_kafka import KafkaException, Producer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SECRET = os.environ["SIGNING_SECRET"].encode()
TOPIC = os.environ.get("TOPIC", "authvia.business-processes")
BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
TOLERANCE_S = 300


class Relay:
    def __init__(self):
        self.producer = Producer({
            "bootstrap.servers": BROKERS,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            "message.timeout.ms": 4000,
        })
        self.running = True
        self.thread = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self.thread.start()

    def _poll(self):
        while self.running:
            self.producer.poll(0.1)

    def close(self):
        self.running = False
        self.thread.join()
        self.producer.flush(5)


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.relay = Relay()
    yield
    app.state.relay.close()


app = FastAPI(lifespan=lifespan)


def verify(headers) -> bool:
    value = headers.get("x-authvia-value", "")
    timestamp = headers.get("x-authvia-timestamp", "")
    if headers.get("x-authvia-algorithm") != "SHA-256" or not value or not timestamp.isdigit():
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        return False
    message = f"{value}.{len(value)}.{timestamp}".encode()
    expected = base64.b64encode(hmac.new(SECRET, message, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, headers.get("x-authvia-signature", ""))


def settle(future, err, msg):
    if not future.done():
        future.set_result((err, msg))


@app.post("/webhooks/business-processes")
async def business_process(request: Request):
    if not verify(request.headers):
        return JSONResponse({"code": "signature_mismatch"}, status_code=401)
    body = await request.body()
    try:
        key = json.loads(body)["id"]
        if not isinstance(key, str) or not key:
            raise ValueError("id")
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"code": "invalid_body"}, status_code=400)

    loop = asyncio.get_running_loop()
    future = loop.create_future()
    try:
        request.app.state.relay.producer.produce(
            TOPIC, value=body, key=key.encode(),
            on_delivery=lambda err, msg: loop.call_soon_threadsafe(settle, future, err, msg))
    except (BufferError, KafkaException):
        return JSONResponse({"code": "kafka_unavailable"}, status_code=503, headers={"Retry-After": "5"})
    try:
        err, msg = await asyncio.wait_for(future, timeout=4.5)
    except asyncio.TimeoutError:
        err, msg = "timeout", None
    if err is not None:
        return JSONResponse({"code": "kafka_unavailable"}, status_code=503, headers={"Retry-After": "5"})
    return {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
