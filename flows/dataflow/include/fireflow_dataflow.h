// fireflow's concurrent dataflow harness (flows/dataflow/): the processes of a top function, one
// thread each, over the bounded streams of hls_stream.h, with a watchdog; and the program's main.
//
// usage: <exe> CAPACITIES INPUTS OUTPUTS IMAGES TIMEOUT_S RESULT_JSON
//   CAPACITIES  text, one "stream_name capacity" per line (0 = unbounded)
//   INPUTS      IMAGES x N_IN float64 values (native byte order); OUTPUTS is written the same way
//   RESULT_JSON {"status": "ok"|"deadlock"|"timeout"|"error", "reason", "seconds", "state", "high_water"}
// exit status: 0 ok, 3 deadlock, 4 timeout (no stream operation for TIMEOUT_S), 5 error, 2 usage.
#ifndef FIREFLOW_DATAFLOW_H
#define FIREFLOW_DATAFLOW_H

#include "hls_stream.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <thread>

#ifndef FIREFLOW_BOUNDED_STREAM
#error "fireflow's bounded hls_stream.h must come first on the include path"
#endif

namespace fireflow_df {

class Network {
  public:
    explicit Network(int images) : images_(images) {}
    ~Network() {
        for (size_t i = 0; i < procs_.size(); ++i) delete procs_[i];
    }
    void process(const std::string &name, std::function<void(int)> body) {
        procs_.push_back(new Proc(name));
        bodies_.push_back(body);
    }
    // run every process in its own thread until all finished, a deadlock, or no progress for timeout_s
    std::string run(double timeout_s) {
        Sched &s = sched();
        {
            std::lock_guard<std::mutex> lg(s.m);
            s.procs = procs_;
            s.live = static_cast<int>(procs_.size());
            s.blocked = 0;
            s.failed = false;
        }
        std::vector<std::thread> threads;
        for (size_t i = 0; i < procs_.size(); ++i) threads.push_back(std::thread(&Network::body, this, i));
        {
            std::unique_lock<std::mutex> lk(s.m);
            unsigned long long last = s.ops;
            std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();
            while (s.live > 0 && !s.failed) {
                s.done_cv.wait_for(lk, std::chrono::milliseconds(50));
                std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now();
                if (s.ops != last) {
                    last = s.ops;
                    since = now;
                } else if (std::chrono::duration<double>(now - since).count() > timeout_s) {
                    fail_locked("timeout");
                }
            }
        }
        for (size_t i = 0; i < threads.size(); ++i) threads[i].join();
        std::lock_guard<std::mutex> lg(s.m);
        std::string status = s.failed ? s.reason : "ok";
        if (!s.failed) s.snapshot = snapshot_locked();
        s.procs.clear();
        return status;
    }

  private:
    void body(size_t i) {
        Proc *p = procs_[i];
        current() = p;
        Sched &s = sched();
        try {
            for (int image = 0; image < images_; ++image) {
                bodies_[i](image);
                std::lock_guard<std::mutex> lg(s.m);
                commit_locked(p);  // a call's last iteration ends with the call
                p->calls++;
            }
        } catch (Aborted &) {
        } catch (...) {
            std::lock_guard<std::mutex> lg(s.m);
            fail_locked("error: an exception in process " + p->name);
        }
        std::lock_guard<std::mutex> lg(s.m);
        if (!s.failed) commit_locked(p);
        p->state = p->calls < images_ ? ABORTED : DONE;
        p->on = 0;
        s.live--;
        check_deadlock_locked();
        if (s.live == 0) s.done_cv.notify_all();
    }

    int images_;
    std::vector<Proc *> procs_;
    std::vector<std::function<void(int)> > bodies_;
};

typedef std::string (*NetworkFn)(int images, const double *in, double *out, double timeout_s);

inline int main(int argc, char **argv, size_t n_in, size_t n_out, void (*load_weights)(), NetworkFn network) {
    if (argc != 7) {
        std::cerr << "usage: " << argv[0] << " CAPACITIES INPUTS OUTPUTS IMAGES TIMEOUT_S RESULT_JSON" << std::endl;
        return 2;
    }
    int images = std::atoi(argv[4]);
    double timeout_s = std::atof(argv[5]);
    std::ifstream caps(argv[1]);
    std::string name;
    size_t capacity;
    while (caps >> name >> capacity) set_capacity(name, capacity);
    std::vector<double> in(static_cast<size_t>(images) * n_in), out(static_cast<size_t>(images) * n_out, 0.0);
    std::FILE *f = std::fopen(argv[2], "rb");
    if (images <= 0 || !f || std::fread(in.data(), sizeof(double), in.size(), f) != in.size()) {
        std::cerr << "cannot read " << in.size() << " inputs from " << argv[2] << std::endl;
        if (f) std::fclose(f);
        return 2;
    }
    std::fclose(f);
    load_weights();
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    std::string status = network(images, in.data(), out.data(), timeout_s);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Sched &s = sched();
    std::ofstream res(argv[6]);
    std::string kind = status.substr(0, status.find(':'));
    res << "{\"status\": " << json_str(kind) << ", \"reason\": " << json_str(status) << ", \"seconds\": " << seconds
        << ", \"state\": " << (s.snapshot.empty() ? std::string("null") : s.snapshot) << ", \"high_water\": {";
    for (std::map<std::string, size_t>::const_iterator it = s.high_water.begin(); it != s.high_water.end(); ++it)
        res << (it == s.high_water.begin() ? "" : ", ") << json_str(it->first) << ": " << it->second;
    res << "}}\n";
    res.close();
    if (kind != "ok") return kind == "deadlock" ? 3 : kind == "timeout" ? 4 : 5;
    f = std::fopen(argv[3], "wb");
    if (!f || std::fwrite(out.data(), sizeof(double), out.size(), f) != out.size()) return 5;
    std::fclose(f);
    return 0;
}

} // namespace fireflow_df

#endif // FIREFLOW_DATAFLOW_H
