// ez_serial_top.v - ez_accel behind a serial command port, for place and route on a small FPGA
// package (an iCE40 UP5K in the SG48 package has 39 I/Os; the command bus has 86).
//
// A controller shifts a 52-bit command {op[3:0], addr[15:0], data[31:0]} in on sdi (MSB first, one
// bit per clk while shift_in is high), pulses go for one clk, waits until busy is low, then shifts
// rdata out on sdo (MSB first, one bit per clk while shift_out is high; load pulses a capture).
module ez_serial_top (
    input  wire clk,
    input  wire rst,
    input  wire sdi,
    input  wire shift_in,
    input  wire go,
    input  wire load,
    input  wire shift_out,
    output wire sdo,
    output wire busy
);
    reg [51:0] cmd;
    reg [31:0] out;
    wire [31:0] rdata;
    always @(posedge clk) begin
        if (shift_in) cmd <= {cmd[50:0], sdi};
        if (load) out <= rdata;
        else if (shift_out) out <= {out[30:0], 1'b0};
    end
    assign sdo = out[31];
    ez_accel accel (.clk(clk), .rst(rst), .cmd_valid(go), .cmd_op(cmd[51:48]), .cmd_addr(cmd[47:32]),
                    .cmd_data(cmd[31:0]), .busy(busy), .rdata(rdata));
endmodule
