// fireflow's bounded, blocking hls::stream for the concurrent dataflow simulation (flows/dataflow/).
//
// It replaces hls4ml's C-simulation model (firmware/ap_types/hls_stream.h: an unbounded queue whose
// read of an empty stream returns 0 with a warning) when this folder comes first on the include
// path. It keeps that header's include guard, so the two are never both in one translation unit.
//
// Every stream constructed with a name takes its capacity from the table the simulation loaded
// (fireflow_df::set_capacity; 0 = unbounded); unnamed ones (a kernel's internal streams) are
// unbounded. Each dataflow process runs in its own thread (fireflow_df::Network). A read blocks while
// the stream is empty, a write while it is full. The model is pessimistic, as a pipelined HLS loop
// iteration is atomic: the words a process has read stay in their FIFO, and the words it has written
// stay invisible to their reader, until the process starts its next iteration (its next read after
// a write, a second read of one stream or a second write to one stream, or the end of its call).
// So the paired reads of a concat/add and the paired writes of a clone happen together, and no
// process holds a word outside a FIFO. When every live process is blocked the network is deadlocked:
// the state of every process and stream is recorded, and every blocked operation throws.
#ifndef X_HLS_STREAM_SIM_H
#define X_HLS_STREAM_SIM_H
#define FIREFLOW_BOUNDED_STREAM 1

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace fireflow_df {

enum State { RUNNING = 0, BLOCKED_READ = 1, BLOCKED_WRITE = 2, DONE = 3, ABORTED = 4 };

struct Aborted {};  // thrown out of a blocked operation once the simulation failed

struct StreamBase;

struct Proc {
    std::string name;
    std::condition_variable cv;
    State state;
    StreamBase *on;  // the stream it is blocked on
    long calls;      // completed calls of the process function (images)
    std::vector<StreamBase *> pending_reads, pending_writes;
    explicit Proc(const std::string &n) : name(n), state(RUNNING), on(0), calls(0) {}
};

struct StreamBase {
    std::string name;
    size_t capacity;  // 0: unbounded
    size_t held;      // words read by a process whose iteration has not ended (still occupying)
    size_t max_fill;
    unsigned long long reads, writes;
    Proc *waiting_reader, *waiting_writer;
    bool registered;
    StreamBase() : capacity(0), held(0), max_fill(0), reads(0), writes(0), waiting_reader(0), waiting_writer(0),
                   registered(false) {}
    virtual ~StreamBase() {}
    virtual size_t visible() const = 0;
    virtual size_t staged() const = 0;
    virtual void publish_one() = 0;
    size_t fill() const { return visible() + staged() + held; }
};

struct Sched {
    std::mutex m;
    std::condition_variable done_cv;
    int live, blocked;
    bool failed;
    unsigned long long ops;
    std::string reason, snapshot;
    std::vector<Proc *> procs;
    std::vector<StreamBase *> streams;  // registered (named) streams, in construction order
    std::map<std::string, size_t> capacities;
    std::map<std::string, size_t> high_water;  // max fill per stream name, kept after the streams are gone
    Sched() : live(0), blocked(0), failed(false), ops(0) {}
};

inline Sched &sched() {
    static Sched s;
    return s;
}

inline Proc *&current() {
    static thread_local Proc *p = 0;
    return p;
}

inline void set_capacity(const std::string &name, size_t capacity) { sched().capacities[name] = capacity; }

inline std::string json_str(const std::string &s) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return out + "\"";
}

inline const char *state_name(State s) {
    switch (s) {
    case RUNNING: return "running";
    case BLOCKED_READ: return "blocked_read";
    case BLOCKED_WRITE: return "blocked_write";
    case DONE: return "done";
    default: return "aborted";
    }
}

// the state of every process and stream, as JSON (called with the lock held)
inline std::string snapshot_locked() {
    Sched &s = sched();
    std::ostringstream o;
    o << "{\"processes\": [";
    for (size_t i = 0; i < s.procs.size(); ++i) {
        Proc *p = s.procs[i];
        o << (i ? ", " : "") << "{\"name\": " << json_str(p->name) << ", \"state\": \"" << state_name(p->state)
          << "\", \"stream\": " << (p->on ? json_str(p->on->name) : std::string("null")) << ", \"calls\": " << p->calls
          << "}";
    }
    o << "], \"streams\": [";
    for (size_t i = 0; i < s.streams.size(); ++i) {
        StreamBase *t = s.streams[i];
        o << (i ? ", " : "") << "{\"name\": " << json_str(t->name) << ", \"fill\": " << t->fill()
          << ", \"capacity\": " << t->capacity << ", \"visible\": " << t->visible() << ", \"reads\": " << t->reads
          << ", \"writes\": " << t->writes << "}";
    }
    o << "]}";
    return o.str();
}

inline void wake(Proc *p) {  // lock held
    if (p && (p->state == BLOCKED_READ || p->state == BLOCKED_WRITE)) {
        Sched &s = sched();
        if (p->on) {
            if (p->on->waiting_reader == p) p->on->waiting_reader = 0;
            if (p->on->waiting_writer == p) p->on->waiting_writer = 0;
        }
        p->state = RUNNING;
        p->on = 0;
        s.blocked--;
        p->cv.notify_one();
    }
}

inline void fail_locked(const std::string &reason) {
    Sched &s = sched();
    if (s.failed) return;
    s.failed = true;
    s.reason = reason;
    s.snapshot = snapshot_locked();
    for (size_t i = 0; i < s.procs.size(); ++i) s.procs[i]->cv.notify_all();
    s.done_cv.notify_all();
}

inline void check_deadlock_locked() {
    Sched &s = sched();
    if (!s.failed && s.live > 0 && s.blocked == s.live) fail_locked("deadlock");
}

// the end of a process's iteration: the words it read leave their FIFOs, the words it wrote appear
inline void commit_locked(Proc *p) {
    for (size_t i = 0; i < p->pending_reads.size(); ++i) {
        StreamBase *t = p->pending_reads[i];
        t->held--;
        wake(t->waiting_writer);
    }
    for (size_t i = 0; i < p->pending_writes.size(); ++i) {
        StreamBase *t = p->pending_writes[i];
        t->publish_one();
        wake(t->waiting_reader);
    }
    p->pending_reads.clear();
    p->pending_writes.clear();
}

inline bool pending_on(const std::vector<StreamBase *> &v, StreamBase *t) {
    return std::find(v.begin(), v.end(), t) != v.end();
}

inline void block_locked(std::unique_lock<std::mutex> &lk, Proc *p, StreamBase *t, State kind) {
    Sched &s = sched();
    if (s.failed) throw Aborted();
    p->state = kind;
    p->on = t;
    if (kind == BLOCKED_READ)
        t->waiting_reader = p;
    else
        t->waiting_writer = p;
    s.blocked++;
    check_deadlock_locked();
    while (p->state == kind && !s.failed) p->cv.wait(lk);
    if (s.failed) throw Aborted();
}

} // namespace fireflow_df

namespace hls {

template <typename __STREAM_T__> class stream : public fireflow_df::StreamBase {
  protected:
    std::deque<__STREAM_T__> _data;    // visible words
    std::deque<__STREAM_T__> _staged;  // written in an iteration that has not ended

  public:
    stream() { name = "unnamed"; }
    stream(const std::string n) {
        fireflow_df::Sched &s = fireflow_df::sched();
        std::lock_guard<std::mutex> lg(s.m);
        name = n;
        std::map<std::string, size_t>::const_iterator it = s.capacities.find(n);
        capacity = it == s.capacities.end() ? 0 : it->second;
        registered = true;
        s.streams.push_back(this);
    }

  private:
    stream(const stream<__STREAM_T__> &);
    stream &operator=(const stream<__STREAM_T__> &);

  public:
    virtual ~stream() {
        if (!registered) return;
        fireflow_df::Sched &s = fireflow_df::sched();
        std::lock_guard<std::mutex> lg(s.m);
        size_t &hw = s.high_water[name];
        hw = std::max(hw, max_fill);
        s.streams.erase(std::remove(s.streams.begin(), s.streams.end(), this), s.streams.end());
    }

    size_t visible() const { return _data.size(); }
    size_t staged() const { return _staged.size(); }
    void publish_one() {
        _data.push_back(_staged.front());
        _staged.pop_front();
    }

    void operator>>(__STREAM_T__ &rdata) { read(rdata); }
    void operator<<(const __STREAM_T__ &wdata) { write(wdata); }

    bool empty() {
        std::lock_guard<std::mutex> lg(fireflow_df::sched().m);
        return _data.empty();
    }
    bool full() {
        std::lock_guard<std::mutex> lg(fireflow_df::sched().m);
        return capacity && fill() >= capacity;
    }
    size_t size() {
        std::lock_guard<std::mutex> lg(fireflow_df::sched().m);
        return _data.size();
    }

    void read(__STREAM_T__ &head) { head = read(); }

    __STREAM_T__ read() {
        fireflow_df::Sched &s = fireflow_df::sched();
        std::unique_lock<std::mutex> lk(s.m);
        fireflow_df::Proc *p = fireflow_df::current();
        if (!p) {  // outside the network (a single-threaded caller): hls4ml's model
            if (_data.empty()) {
                std::cout << "WARNING: Hls::stream '" << name << "' is read while empty" << std::endl;
                return __STREAM_T__();
            }
            __STREAM_T__ e = _data.front();
            _data.pop_front();
            return e;
        }
        if (!p->pending_writes.empty() || fireflow_df::pending_on(p->pending_reads, this))
            fireflow_df::commit_locked(p);  // a new iteration
        while (_data.empty()) fireflow_df::block_locked(lk, p, this, fireflow_df::BLOCKED_READ);
        __STREAM_T__ e = _data.front();
        _data.pop_front();
        held++;
        p->pending_reads.push_back(this);
        reads++;
        s.ops++;
        return e;
    }

    void write(const __STREAM_T__ &tail) {
        fireflow_df::Sched &s = fireflow_df::sched();
        std::unique_lock<std::mutex> lk(s.m);
        fireflow_df::Proc *p = fireflow_df::current();
        if (!p) {
            _data.push_back(tail);
            return;
        }
        if (fireflow_df::pending_on(p->pending_writes, this)) fireflow_df::commit_locked(p);
        while (capacity && fill() >= capacity) fireflow_df::block_locked(lk, p, this, fireflow_df::BLOCKED_WRITE);
        _staged.push_back(tail);
        p->pending_writes.push_back(this);
        writes++;
        s.ops++;
        max_fill = std::max(max_fill, fill());
    }

    bool read_nb(__STREAM_T__ &head) {
        if (empty()) {
            head = __STREAM_T__();
            return false;
        }
        head = read();
        return true;
    }
    bool write_nb(const __STREAM_T__ &tail) {
        if (full()) return false;
        write(tail);
        return true;
    }
};

} // namespace hls

#endif // X_HLS_STREAM_SIM_H
