# boto3 against a Macula S3 gateway; run by agent/maculad/tests/s3_gateway.rs.
import hashlib, os, time, urllib.request
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ep, kid, sec = os.environ["EP"], os.environ["KID"], os.environ["SEC"]
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=kid, aws_secret_access_key=sec,
                  region_name="macula", config=cfg)

def code(f):
    try:
        f()
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("no error")

import sys

def other(ep2):
    return boto3.client("s3", endpoint_url=ep2, aws_access_key_id=kid, aws_secret_access_key=sec,
                        region_name="macula", config=cfg)

shared = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(40000))  # 1.28 MB
phase = sys.argv[1] if len(sys.argv) > 1 else "main"
if phase == "seed":
    # Through the first gateway, while the second is down.
    s3.create_bucket(Bucket="shared")
    s3.put_object(Bucket="shared", Key="x.bin", Body=shared)
    print("seeded")
    sys.exit(0)
if phase == "second":
    # Through the second gateway, which was down when the key, the bucket and x.bin were made.
    g2 = other(os.environ["EP2"])
    assert "shared" in [b["Name"] for b in g2.list_buckets()["Buckets"]]
    assert g2.get_object(Bucket="shared", Key="x.bin")["Body"].read() == shared
    g2.put_object(Bucket="shared", Key="y.txt", Body=b"from the second gateway")
    for _ in range(50):
        try:
            if s3.get_object(Bucket="shared", Key="y.txt")["Body"].read() == b"from the second gateway":
                break
        except ClientError:
            pass
        time.sleep(0.1)
    else:
        raise AssertionError("the first gateway never saw y.txt")
    print("second gateway: caught up and serves the same buckets")
    sys.exit(0)

if phase == "revoked":
    # The key was revoked through node 0: both gateways refuse it.
    for ep_ in [ep, os.environ["EP2"]]:
        c = other(ep_)
        for _ in range(50):
            try:
                c.list_buckets()
            except ClientError as e:
                assert e.response["Error"]["Code"] == "InvalidAccessKeyId", e
                break
            time.sleep(0.1)
        else:
            raise AssertionError("%s still accepts the revoked key" % ep_)
    print("revoked key refused by both gateways")
    sys.exit(0)

def resume_part(n, size):
    return hashlib.sha512(b"part %d" % n).digest() * (size // 64)

if phase == "mp-start":
    # Two multipart uploads begun before the gateway restarts: one to finish after, one to abort.
    import json
    s3.create_bucket(Bucket="resume")
    resume = s3.create_multipart_upload(Bucket="resume", Key="r.bin")["UploadId"]
    s3.upload_part(Bucket="resume", Key="r.bin", UploadId=resume, PartNumber=1, Body=resume_part(1, 5 << 20))
    gone = s3.create_multipart_upload(Bucket="resume", Key="gone.bin")["UploadId"]
    s3.upload_part(Bucket="resume", Key="gone.bin", UploadId=gone, PartNumber=1, Body=resume_part(9, 1 << 20))
    print(json.dumps({"resume": resume, "gone": gone}))
    sys.exit(0)

if phase == "mp-finish":
    # After the restart: the first upload still lists its part, takes a second and completes;
    # the second is listed and aborted.
    resume, gone = os.environ["RESUME"], os.environ["GONE"]
    parts = s3.list_parts(Bucket="resume", Key="r.bin", UploadId=resume)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 << 20)], parts
    tag2 = s3.upload_part(Bucket="resume", Key="r.bin", UploadId=resume, PartNumber=2,
                          Body=resume_part(2, 64 * 1000))["ETag"]
    s3.complete_multipart_upload(Bucket="resume", Key="r.bin", UploadId=resume, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": parts[0]["ETag"]}, {"PartNumber": 2, "ETag": tag2}]})
    whole = resume_part(1, 5 << 20) + resume_part(2, 64 * 1000)
    assert s3.get_object(Bucket="resume", Key="r.bin")["Body"].read() == whole
    listed = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="resume").get("Uploads", [])]
    assert listed == [gone], listed
    s3.abort_multipart_upload(Bucket="resume", Key="gone.bin", UploadId=gone)
    assert code(lambda: s3.list_parts(Bucket="resume", Key="gone.bin", UploadId=gone)) == "NoSuchUpload"
    s3.delete_object(Bucket="resume", Key="r.bin")
    s3.delete_bucket(Bucket="resume")
    print("multipart uploads survived the gateway's restart: one completed, one aborted")
    sys.exit(0)

if phase == "reader":
    # GETs every object of bucket `tree` over and over until STOP exists, each compared with the
    # file it was synced from (TREE/key): errors are allowed while nodes die, wrong bytes never.
    import json
    r3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=kid, aws_secret_access_key=sec,
                      region_name="macula",
                      config=cfg.merge(Config(read_timeout=20, connect_timeout=5)))
    tree, stop = os.environ["TREE"], os.environ["STOP"]
    got, errors, corrupt, why = 0, 0, [], {}

    def failed(e):
        global errors
        errors += 1
        name = e.response["Error"]["Code"] if isinstance(e, ClientError) else type(e).__name__
        why[name] = why.get(name, 0) + 1

    while not os.path.exists(stop):
        try:
            keys = [o["Key"] for o in r3.list_objects_v2(Bucket="tree").get("Contents", [])]
        except Exception as e:
            failed(e)
            time.sleep(0.2)
            continue
        if not keys:
            time.sleep(0.1)
        for k in keys:
            if os.path.exists(stop):
                break
            try:
                data = r3.get_object(Bucket="tree", Key=k)["Body"].read()
            except Exception as e:
                failed(e)
                continue
            with open(os.path.join(tree, k), "rb") as f:
                if data == f.read():
                    got += 1
                else:
                    corrupt.append(k)
    print(json.dumps({"got": got, "errors": errors, "corrupt": corrupt, "why": why}))
    sys.exit(0)

if phase == "tls":
    # Over HTTPS (a TLS-terminating proxy in front of the gateway, as a site would run one),
    # boto3 sends PutObject and UploadPart as STREAMING-UNSIGNED-PAYLOAD-TRAILER: aws-chunked
    # inside Transfer-Encoding: chunked, the CRC32 in a trailer. A byte changed in transit
    # (by the proxy) must be caught by that checksum.
    import http.client, socket, ssl, subprocess, tempfile, threading, urllib.parse
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    d = tempfile.mkdtemp()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", d + "/k.pem", "-out", d + "/c.pem"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d + "/c.pem", d + "/k.pem")
    lsock = socket.create_server(("127.0.0.1", 0))
    up = urllib.parse.urlparse(ep)
    seen = {"trailer": 0, "tamper": False, "flipped": 0}

    def pump(src, dst, edit):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                dst.sendall(edit(b))
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def upstream(b):
        if b"STREAMING-UNSIGNED-PAYLOAD-TRAILER" in b:
            seen["trailer"] += 1
        if seen["tamper"] and b"macula-" in b:
            seen["tamper"] = False
            seen["flipped"] += 1
            return b.replace(b"macula-", b"mecula-", 1)
        return b

    def serve():
        while True:
            c, _ = lsock.accept()
            try:
                c = ctx.wrap_socket(c, server_side=True)
            except (ssl.SSLError, OSError):
                continue
            u = socket.create_connection((up.hostname, up.port))
            threading.Thread(target=pump, args=(c, u, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(u, c, lambda b: b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    t3 = boto3.client("s3", endpoint_url="https://127.0.0.1:%d" % lsock.getsockname()[1],
                      aws_access_key_id=kid, aws_secret_access_key=sec, region_name="macula",
                      config=cfg, verify=d + "/c.pem")
    t3.create_bucket(Bucket="sealed")
    body = b"macula-" * 300000  # 2.1 MB
    r = t3.put_object(Bucket="sealed", Key="t.bin", Body=body)
    assert seen["trailer"] >= 1, "boto3 sent no aws-chunked body with a trailer"
    assert r["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), r
    assert t3.get_object(Bucket="sealed", Key="t.bin")["Body"].read() == body
    uid = t3.create_multipart_upload(Bucket="sealed", Key="mp.bin")["UploadId"]
    tag = t3.upload_part(Bucket="sealed", Key="mp.bin", UploadId=uid, PartNumber=1, Body=body)["ETag"]
    t3.complete_multipart_upload(Bucket="sealed", Key="mp.bin", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": tag}]})
    assert t3.get_object(Bucket="sealed", Key="mp.bin")["Body"].read() == body
    assert seen["trailer"] >= 2, seen
    seen["tamper"] = True
    assert code(lambda: t3.put_object(Bucket="sealed", Key="t.bin", Body=b"macula-" * 1000)) == "BadDigest"
    assert seen["flipped"] == 1, seen
    assert t3.get_object(Bucket="sealed", Key="t.bin")["Body"].read() == body

    # Plain HTTP, Transfer-Encoding: chunked without aws-chunked (the signed payload hash
    # checked after the chunks are joined), as clients streaming a body of unknown length send.
    def chunked_put(key, data, signed_as):
        req = AWSRequest(method="PUT", url="%s/sealed/%s" % (ep, key), data=signed_as)
        S3SigV4Auth(Credentials(kid, sec), "s3", "macula").add_auth(req)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        headers = {k: v for k, v in req.headers.items() if k.lower() != "content-length"}
        conn.request("PUT", "/sealed/" + key, body=iter([data[i:i + 70000] for i in range(0, len(data), 70000)]),
                     headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.read()

    status, text = chunked_put("te.bin", body, body)
    assert status == 200, text
    assert t3.get_object(Bucket="sealed", Key="te.bin")["Body"].read() == body
    status, text = chunked_put("te.bin", b"other" * 100, b"signed something else")
    assert status == 400 and b"XAmzContentSHA256Mismatch" in text, (status, text)
    assert t3.get_object(Bucket="sealed", Key="te.bin")["Body"].read() == body
    for k in ["t.bin", "mp.bin", "te.bin"]:
        t3.delete_object(Bucket="sealed", Key=k)
    t3.delete_bucket(Bucket="sealed")
    print("TLS: boto3 PutObject and UploadPart with a CRC32 trailer, a changed byte caught (BadDigest); "
          "Transfer-Encoding chunked over HTTP")
    sys.exit(0)

s3.create_bucket(Bucket="photos")
assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["photos"]
s3.head_bucket(Bucket="photos")
assert code(lambda: s3.create_bucket(Bucket="photos")) == "BucketAlreadyOwnedByYou"

big = os.urandom(3 * 1024 * 1024 + 123)  # four 1 MiB segments
t = time.time()
r = s3.put_object(Bucket="photos", Key="2024/a.bin", Body=big, Metadata={"mtime": "123"})
put_s = time.time() - t
assert r["ETag"] == '"%s"' % hashlib.md5(big).hexdigest(), r["ETag"]
for k in ["2024/b.txt", "2025/c.txt", "top.txt"]:
    s3.put_object(Bucket="photos", Key=k, Body=k.encode())
t = time.time()
g = s3.get_object(Bucket="photos", Key="2024/a.bin")
data = g["Body"].read()
get_s = time.time() - t
assert data == big, "GET is not byte-identical"
assert g["Metadata"] == {"mtime": "123"}, g["Metadata"]
g = s3.get_object(Bucket="photos", Key="2024/a.bin", Range="bytes=1048000-1049999")
assert g["Body"].read() == big[1048000:1050000]
assert g["ContentRange"] == "bytes 1048000-1049999/%d" % len(big), g["ContentRange"]
h = s3.head_object(Bucket="photos", Key="2024/a.bin")
assert h["ContentLength"] == len(big) and h["ETag"] == r["ETag"]

keys = lambda l: [o["Key"] for o in l.get("Contents", [])]
assert keys(s3.list_objects_v2(Bucket="photos", Prefix="2024/")) == ["2024/a.bin", "2024/b.txt"]
l = s3.list_objects_v2(Bucket="photos", Delimiter="/")
assert keys(l) == ["top.txt"], l
assert [p["Prefix"] for p in l["CommonPrefixes"]] == ["2024/", "2025/"], l
p1 = s3.list_objects_v2(Bucket="photos", MaxKeys=3)
assert p1["IsTruncated"] and len(keys(p1)) == 3
p2 = s3.list_objects_v2(Bucket="photos", MaxKeys=3, ContinuationToken=p1["NextContinuationToken"])
assert not p2["IsTruncated"] and keys(p1) + keys(p2) == ["2024/a.bin", "2024/b.txt", "2025/c.txt", "top.txt"]

# ListObjects v1 and ListObjectVersions (unversioned: VersionId "null").
v1 = s3.list_objects(Bucket="photos", Delimiter="/")
assert keys(v1) == ["top.txt"] and [p["Prefix"] for p in v1["CommonPrefixes"]] == ["2024/", "2025/"], v1
v1 = s3.list_objects(Bucket="photos", Marker="2024/b.txt")
assert keys(v1) == ["2025/c.txt", "top.txt"], v1
vs = s3.list_object_versions(Bucket="photos", Prefix="2024/")
assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in vs["Versions"]] == [
    ("2024/a.bin", "null", True), ("2024/b.txt", "null", True)], vs

# CopyObject: metadata copied, or replaced.
c = s3.copy_object(Bucket="photos", Key="copy.bin", CopySource={"Bucket": "photos", "Key": "2024/a.bin"})
assert c["CopyObjectResult"]["ETag"] == r["ETag"]
g = s3.get_object(Bucket="photos", Key="copy.bin")
assert g["Body"].read() == big and g["Metadata"] == {"mtime": "123"}
s3.copy_object(Bucket="photos", Key="copy.bin", CopySource="photos/copy.bin",
               MetadataDirective="REPLACE", Metadata={"k": "v"}, ContentType="text/x-test")
h = s3.head_object(Bucket="photos", Key="copy.bin")
assert h["Metadata"] == {"k": "v"} and h["ContentType"] == "text/x-test", h
assert code(lambda: s3.copy_object(Bucket="photos", Key="x", CopySource="photos/missing")) == "NoSuchKey"

# DeleteObjects: existing and missing keys are both reported deleted (as S3).
d = s3.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": "copy.bin"}, {"Key": "never"}]})
assert sorted(x["Key"] for x in d["Deleted"]) == ["copy.bin", "never"], d
assert code(lambda: s3.head_object(Bucket="photos", Key="copy.bin")) == "404"

# Multipart: parts of 5 MiB, 1 MiB, 100 B uploaded; completed with 1 and 3 (part 2's body is
# deleted); completion errors; abort.
parts = [os.urandom(5 * 1024 * 1024), os.urandom(1024 * 1024), b"tail" * 25]
uid = s3.create_multipart_upload(Bucket="photos", Key="mp.bin", Metadata={"a": "b"})["UploadId"]
tags = [s3.upload_part(Bucket="photos", Key="mp.bin", UploadId=uid, PartNumber=i + 1, Body=b)["ETag"]
        for i, b in enumerate(parts)]
assert tags[1] == '"%s"' % hashlib.md5(parts[1]).hexdigest()
assert [p["PartNumber"] for p in s3.list_parts(Bucket="photos", Key="mp.bin", UploadId=uid)["Parts"]] == [1, 2, 3]
assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="photos")["Uploads"]] == [uid]
complete = lambda ps: s3.complete_multipart_upload(
    Bucket="photos", Key="mp.bin", UploadId=uid,
    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": t} for n, t in ps]})
assert code(lambda: complete([(1, tags[1])])) == "InvalidPart"
assert code(lambda: complete([(2, tags[1]), (3, tags[2])])) == "EntityTooSmall"
done = complete([(1, tags[0]), (3, tags[2])])
md5s = hashlib.md5(b"".join(hashlib.md5(x).digest() for x in [parts[0], parts[2]])).hexdigest()
assert done["ETag"] == '"%s-2"' % md5s, done
whole = parts[0] + parts[2]
g = s3.get_object(Bucket="photos", Key="mp.bin")
assert g["Body"].read() == whole and g["Metadata"] == {"a": "b"} and g["ETag"] == done["ETag"]
g = s3.get_object(Bucket="photos", Key="mp.bin", Range="bytes=5242870-5242889")
assert g["Body"].read() == whole[5242870:5242890]  # across the parts
assert code(lambda: s3.list_parts(Bucket="photos", Key="mp.bin", UploadId=uid)) == "NoSuchUpload"
uid2 = s3.create_multipart_upload(Bucket="photos", Key="gone.bin")["UploadId"]
s3.upload_part(Bucket="photos", Key="gone.bin", UploadId=uid2, PartNumber=1, Body=b"x" * 1000)
s3.abort_multipart_upload(Bucket="photos", Key="gone.bin", UploadId=uid2)
assert code(lambda: s3.list_parts(Bucket="photos", Key="gone.bin", UploadId=uid2)) == "NoSuchUpload"
assert code(lambda: s3.head_object(Bucket="photos", Key="gone.bin")) == "404"
s3.delete_object(Bucket="photos", Key="mp.bin")

url = s3.generate_presigned_url("get_object", Params={"Bucket": "photos", "Key": "top.txt"}, ExpiresIn=60)
assert urllib.request.urlopen(url).read() == b"top.txt"

assert code(lambda: s3.get_object(Bucket="photos", Key="missing")) == "NoSuchKey"
assert code(lambda: s3.head_object(Bucket="photos", Key="missing")) == "404"
assert code(lambda: s3.get_object(Bucket="nope", Key="x")) == "NoSuchBucket"
assert code(lambda: s3.list_objects_v2(Bucket="nope")) == "NoSuchBucket"
assert code(lambda: s3.delete_bucket(Bucket="photos")) == "BucketNotEmpty"
bad = boto3.client("s3", endpoint_url=ep, aws_access_key_id=kid, aws_secret_access_key=sec + "x",
                   region_name="macula", config=cfg)
assert code(lambda: bad.list_buckets()) == "SignatureDoesNotMatch"
assert code(lambda: bad.put_object(Bucket="photos", Key="top.txt", Body=b"evil")) == "SignatureDoesNotMatch"
assert s3.get_object(Bucket="photos", Key="top.txt")["Body"].read() == b"top.txt"
assert code(lambda: s3.get_bucket_versioning(Bucket="photos")) == "NotImplemented"

# Overwrite, then delete everything and the bucket.
s3.put_object(Bucket="photos", Key="top.txt", Body=b"v2")
assert s3.get_object(Bucket="photos", Key="top.txt")["Body"].read() == b"v2"
for k in ["2024/a.bin", "2024/b.txt"]:
    s3.delete_object(Bucket="photos", Key=k)
s3.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": "2025/c.txt"}, {"Key": "top.txt"}], "Quiet": True})
assert code(lambda: s3.get_object(Bucket="photos", Key="top.txt")) == "NoSuchKey"
s3.delete_bucket(Bucket="photos")
assert s3.list_buckets()["Buckets"] == []
print("boto3 %s: all checks passed; PUT %d B in %.2f s, GET in %.2f s" % (boto3.__version__, len(big), put_s, get_s))
