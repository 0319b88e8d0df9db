# boto3 side of `make bench-s3` (agent/maculad/benches/s3.rs): times its own requests
# in-process (the interpreter's start and boto3's import are not counted) and prints JSON.
import hashlib, io, json, os, sys, time
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

ep, kid, sec = os.environ["EP"], os.environ["KID"], os.environ["SEC"]
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=kid, aws_secret_access_key=sec,
                  region_name="macula",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                read_timeout=300))
# Over plain HTTP boto3 signs the payload's SHA-256 (the client hashes 64 MiB on this shared
# machine, the gateway hashes it again); over HTTPS it sends UNSIGNED-PAYLOAD. The second
# client does that here, to tell the gateway's cost from the client's.
s3u = boto3.client("s3", endpoint_url=ep, aws_access_key_id=kid, aws_secret_access_key=sec,
                   region_name="macula",
                   config=Config(s3={"addressing_style": "path", "payload_signing_enabled": False},
                                 retries={"max_attempts": 1}, read_timeout=300))
phase = sys.argv[1]
bucket = "bench"


def median(v):
    return sorted(v)[len(v) // 2]


if phase == "large":
    # PUT and GET of the same file maculactl puts, RUNS times each; the GET streams to a file as
    # `maculactl get` does.
    path, runs = os.environ["FILE"], int(os.environ["RUNS"])
    s3.create_bucket(Bucket=bucket)
    size = os.path.getsize(path)
    want = hashlib.md5(open(path, "rb").read()).hexdigest()
    puts, unsigned, gets = [], [], []
    for i in range(runs):
        with open(path, "rb") as f:
            t = time.perf_counter()
            r = s3u.put_object(Bucket=bucket, Key="large", Body=f, ContentLength=size)
            unsigned.append(time.perf_counter() - t)
        assert r["ETag"] == '"%s"' % want, r
        with open(path, "rb") as f:
            t = time.perf_counter()
            r = s3.put_object(Bucket=bucket, Key="large", Body=f, ContentLength=size)
            puts.append(time.perf_counter() - t)
        assert r["ETag"] == '"%s"' % want, r
        out = path + ".s3"
        t = time.perf_counter()
        body = s3.get_object(Bucket=bucket, Key="large")["Body"]
        md5 = hashlib.md5()
        with open(out, "wb") as f:
            for piece in iter(lambda: body.read(1 << 20), b""):
                f.write(piece)
        gets.append(time.perf_counter() - t)
        md5.update(open(out, "rb").read())
        assert md5.hexdigest() == want
        os.remove(out)
    s3.delete_object(Bucket=bucket, Key="large")
    print(json.dumps({"bytes": size, "put_s": median(puts), "put_unsigned_s": median(unsigned),
                      "get_s": median(gets)}))

elif phase == "small":
    # COUNT objects of 4 KiB: every PUT, then every GET, one request at a time.
    count = int(os.environ["COUNT"])
    bodies = [os.urandom(4096) for _ in range(count)]
    t = time.perf_counter()
    for i, b in enumerate(bodies):
        s3.put_object(Bucket=bucket, Key="small/%d" % i, Body=b)
    put_s = time.perf_counter() - t
    t = time.perf_counter()
    for i, b in enumerate(bodies):
        assert s3.get_object(Bucket=bucket, Key="small/%d" % i)["Body"].read() == b
    get_s = time.perf_counter() - t
    for i in range(0, count, 1000):
        s3.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": "small/%d" % j} for j in range(i, min(i + 1000, count))], "Quiet": True})
    print(json.dumps({"count": count, "put_s": put_s, "get_s": get_s}))

elif phase == "huge":
    # SIZE bytes streamed from a generator (nothing on disk on this side), multipart in 8 MiB
    # parts with boto3's default concurrency; the Rust side samples the gateway's RSS meanwhile.
    size = int(os.environ["SIZE"])

    class Stream(io.RawIOBase):
        def __init__(self):
            self.left = size
            self.block = hashlib.sha512(b"macula").digest() * 16384  # 1 MiB

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), self.left, len(self.block))
            b[:n] = self.block[:n]
            self.left -= n
            return n

    t = time.perf_counter()
    s3.upload_fileobj(io.BufferedReader(Stream(), 1 << 20), bucket, "huge",
                      Config=TransferConfig(multipart_chunksize=8 << 20))
    put_s = time.perf_counter() - t
    head = s3.head_object(Bucket=bucket, Key="huge")
    assert head["ContentLength"] == size, head
    s3.delete_object(Bucket=bucket, Key="huge")
    s3.delete_bucket(Bucket=bucket)
    print(json.dumps({"bytes": size, "put_s": put_s}))
